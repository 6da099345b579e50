//! `svcconf`: see [`svcconf_harness::cli`].

fn main() -> std::process::ExitCode {
    svcconf_harness::cli::main()
}

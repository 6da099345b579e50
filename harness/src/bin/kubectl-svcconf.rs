//! `kubectl svcconf`: kubectl finds `kubectl-svcconf` on PATH and runs it.
//! The same CLI as `svcconf`; under this name its help reads as
//! `kubectl svcconf ...` and the cluster is kubectl's.

fn main() -> std::process::ExitCode {
    svcconf_harness::cli::main()
}

//! The binary's contract: JSON on stdout, exit 0 when the probe ran, 2 on bad arguments.

use std::process::Command;

fn probe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_svcconf-probe"))
        .args(args)
        .output()
        .expect("run svcconf-probe");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn bad_arguments_exit_2_with_one_error() {
    for args in [
        &["http", "https://x/"][..],
        &["tcp", "no-port"],
        &["dns", "x", "--type", "MX"],
        &["http", "http://x/", "--count", "0"],
        &["frobnicate"],
    ] {
        let (code, stdout, stderr) = probe(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stdout.is_empty() && stderr.contains("error"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn refused_target_is_a_result_not_a_failure() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, stdout, _) = probe(&["tcp", &target, "--timeout-ms", "1000"]);
    assert_eq!(code, 0);
    let report: svcconf_probe::TcpReport = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report.result, svcconf_probe::Outcome::Refused);
}

//! Probe orchestration: run `svcconf-probe` in a client pod by exec and read
//! its JSON into an [`Observation`]. A probe that prints no report is an
//! error (no result), never an empty pass.

pub mod external;

use std::time::Duration;

use crate::kube::exec::{self, ExecError};
use crate::kube::jig::Jig;
use crate::model::{
    request_timeout_ms, scaled, DnsReport, HttpReport, Observation, Probe, ProbeReport, TcpReport,
    WarningsReport,
};
use crate::template::{Facts, PodFact};

/// Where the probe binary lives in the probe image (`FROM scratch`).
pub const PROBE_BIN: &str = "/probe";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("probe in pod {pod} printed no report ({status}); stderr: {stderr}")]
    NoReport {
        pod: String,
        status: String,
        stderr: String,
    },
}

/// The command line for `probe`, with placeholders rendered.
pub fn command(probe: &Probe, facts: &Facts) -> Vec<String> {
    let mut cmd = vec![PROBE_BIN.to_string()];
    match probe {
        Probe::Http {
            target,
            count,
            path,
            interval_ms,
        } => {
            cmd.extend([
                "http".into(),
                format!(
                    "http://{}{}",
                    facts.render_target(target),
                    facts.render(path)
                ),
                "--count".into(),
                count.to_string(),
                "--timeout-ms".into(),
                request_timeout_ms().to_string(),
            ]);
            if *interval_ms > 0 {
                cmd.extend(["--interval-ms".into(), interval_ms.to_string()]);
            }
        }
        Probe::Tcp { target } => {
            cmd.extend([
                "tcp".into(),
                facts.render_target(target),
                "--timeout-ms".into(),
                request_timeout_ms().to_string(),
            ]);
        }
        Probe::Udp {
            target,
            count,
            interval_ms,
            source_port,
        } => {
            cmd.extend([
                "udp".into(),
                facts.render_target(target),
                "--count".into(),
                count.to_string(),
                "--timeout-ms".into(),
                request_timeout_ms().to_string(),
            ]);
            if *interval_ms > 0 {
                cmd.extend(["--interval-ms".into(), interval_ms.to_string()]);
            }
            if let Some(port) = source_port {
                let port = crate::template::source_port(*port, facts);
                cmd.extend(["--source-port".into(), port.to_string()]);
            }
        }
        Probe::Dns {
            name,
            record_type,
            no_search,
        } => {
            cmd.extend([
                "dns".into(),
                facts.render(name),
                "--type".into(),
                record_type.clone(),
                "--timeout-ms".into(),
                request_timeout_ms().to_string(),
            ]);
            if *no_search {
                cmd.push("--no-search".into());
            }
        }
        // Not the probe's: the harness asks the API server. What it asks,
        // as kubectl would, for the evidence.
        Probe::ApiWarnings(o) => {
            return vec![
                "kubectl".into(),
                "patch".into(),
                format!("{}/{}", o.kind.to_lowercase(), facts.render(&o.name)),
                "--type=merge".into(),
                "--patch={}".into(),
                "--dry-run=server".into(),
            ]
        }
    }
    cmd
}

/// How long the whole probe may take: every request timing out, plus slack.
pub fn deadline(probe: &Probe) -> Duration {
    let (requests, interval) = match probe {
        Probe::Http {
            count, interval_ms, ..
        }
        | Probe::Udp {
            count, interval_ms, ..
        } => (*count, *interval_ms),
        _ => (1, 0),
    };
    Duration::from_millis(
        u64::from(requests) * u64::from(request_timeout_ms() + interval)
            + scaled(Duration::from_secs(30)).as_millis() as u64,
    )
}

/// Parses what the probe printed for `probe`'s role.
pub fn parse(probe: &Probe, stdout: &str) -> Option<ProbeReport> {
    let json = stdout.trim();
    match probe {
        Probe::Http { .. } | Probe::Udp { .. } => serde_json::from_str::<HttpReport>(json)
            .ok()
            .map(ProbeReport::Http),
        Probe::Tcp { .. } => serde_json::from_str::<TcpReport>(json)
            .ok()
            .map(ProbeReport::Tcp),
        Probe::Dns { .. } => serde_json::from_str::<DnsReport>(json)
            .ok()
            .map(ProbeReport::Dns),
        Probe::ApiWarnings(_) => serde_json::from_str::<WarningsReport>(json)
            .ok()
            .map(ProbeReport::Warnings),
    }
}

/// Runs `probe` inside `jig`'s client pod `from`; a pod shared with other
/// namespaces' cases resolves names as a pod of the jig's namespace.
pub async fn run_in_pod(
    jig: &Jig,
    from: &PodFact,
    probe: &Probe,
    facts: &Facts,
) -> Result<Observation, ProbeError> {
    let mut cmd = command(probe, facts);
    if jig.clients != jig.namespace {
        cmd.splice(1..1, ["--namespace".to_string(), jig.namespace.clone()]);
    }
    let started = std::time::Instant::now();
    let out = exec::exec(&jig.client, &jig.clients, &from.name, &cmd, deadline(probe)).await?;
    tracing::debug!(pod = %from.name, command = %cmd.join(" "), seconds = started.elapsed().as_secs_f64(), "probe done");
    let report = parse(probe, &out.stdout).ok_or_else(|| ProbeError::NoReport {
        pod: from.name.clone(),
        status: out.status.clone(),
        stderr: out.stderr.trim().chars().take(400).collect(),
    })?;
    Ok(Observation {
        client_pod: from.name.clone(),
        client_node: from.node.clone(),
        client_ip: from.ip.clone(),
        command: cmd,
        report,
        raw: out.stdout.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_http_commands() {
        let facts = Facts {
            vars: [("clusterIP:web".to_string(), "10.96.0.20".to_string())].into(),
            ..Default::default()
        };
        let probe = Probe::Http {
            target: "${clusterIP:web}:80".into(),
            count: 30,
            path: "/".into(),
            interval_ms: 0,
        };
        assert_eq!(
            command(&probe, &facts).join(" "),
            "/probe http http://10.96.0.20:80/ --count 30 --timeout-ms 2000"
        );
        assert_eq!(deadline(&probe), Duration::from_secs(90));
    }

    #[test]
    fn reads_the_probe_crate_reports() {
        // What svcconf-probe prints reads back into the same types.
        let mut tally = svcconf_probe::HttpReport {
            url: "http://web:80/".into(),
            count: 2,
            ok: 2,
            ..Default::default()
        };
        tally.backends.insert("web-1".into(), 2);
        tally.client_ips.insert("10.244.0.5".into(), 2);
        tally.body_snippet = Some(r#"{"hostname":"web-1","podIP":"10.244.1.2","clientIP":"10.244.0.5","clientPort":1,"serverPort":8080,"path":"/"}"#.into());
        let json = serde_json::to_string(&tally).unwrap();
        let probe = Probe::Http {
            target: "web:80".into(),
            count: 2,
            path: "/".into(),
            interval_ms: 0,
        };
        let Some(ProbeReport::Http(r)) = parse(&probe, &json) else {
            panic!("no report from {json}")
        };
        assert_eq!((r.count, r.ok), (2, 2));
        assert_eq!(r.backends["web-1"], 2);
        assert_eq!(r.client_ips["10.244.0.5"], 2);
        assert_eq!(r.first_server_port(), Some(8080));
        assert!(parse(&probe, "Error: connection refused").is_none());
    }
}

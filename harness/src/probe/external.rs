//! Checks from outside the cluster: the harness process itself is the
//! client (NodePort, externalIPs, externalTrafficPolicy Local), running the
//! same clients as the in-pod probe through the `svcconf-probe` library.
//! On kind, the host reaches the nodes over the docker bridge.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::cluster::docker::{self, KIND_NETWORK};
use crate::model::{request_timeout_ms, ClientPlacement, Observation, Probe, ProbeReport};
use crate::template::Facts;

use super::{parse, ProbeError};

/// The name evidence gives the external client.
pub const EXTERNAL_CLIENT: &str = "harness";

/// Runs `probe` from this process.
pub async fn run(probe: &Probe, facts: &Facts) -> Result<Observation, ProbeError> {
    let timeout = Duration::from_millis(u64::from(request_timeout_ms()));
    let (command, target, report) = match probe {
        Probe::Http {
            target,
            count,
            path,
            interval_ms,
        } => {
            let url = format!(
                "http://{}{}",
                facts.render_target(target),
                facts.render(path)
            );
            let mut opts = svcconf_probe::HttpOptions::new(url.clone());
            opts.count = *count;
            opts.timeout = timeout;
            opts.interval = Duration::from_millis(u64::from(*interval_ms));
            let report = svcconf_probe::http_probe(&opts).await;
            let command = format!("http {url} --count {count}");
            (
                command,
                facts.render_target(target),
                ProbeReport::Http(report),
            )
        }
        Probe::Udp {
            target,
            count,
            interval_ms,
            source_port,
        } => {
            let target = facts.render_target(target);
            let source_port = source_port.map(|p| crate::template::source_port(p, facts));
            let opts = svcconf_probe::UdpOptions {
                target: target.clone(),
                count: *count,
                timeout,
                interval: Duration::from_millis(u64::from(*interval_ms)),
                source_port,
                payload: b"svcconf-probe".to_vec(),
                namespace: None,
            };
            let report = svcconf_probe::udp_probe(&opts).await;
            let from = source_port
                .map(|p| format!(" --source-port {p}"))
                .unwrap_or_default();
            let command = format!("udp {target} --count {count}{from}");
            (command, target, ProbeReport::Http(report))
        }
        Probe::Tcp { target } => {
            let target = facts.render_target(target);
            let report = svcconf_probe::tcp_probe(&target, timeout, None).await;
            (format!("tcp {target}"), target, ProbeReport::Tcp(report))
        }
        Probe::Dns { .. } | Probe::ApiWarnings(_) => {
            return Err(not_from_outside(EXTERNAL_CLIENT, probe));
        }
    };
    // The same JSON an in-pod probe prints, as evidence.
    let raw = match &report {
        ProbeReport::Http(r) => to_json(r),
        ProbeReport::Tcp(r) => to_json(r),
        ProbeReport::Dns(r) => to_json(r),
        ProbeReport::Warnings(r) => to_json(r),
    };
    Ok(Observation {
        client_pod: EXTERNAL_CLIENT.into(),
        client_node: "outside the cluster".into(),
        client_ip: source_address(&target)
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        command: vec![format!("({EXTERNAL_CLIENT}) {command}")],
        report,
        raw,
    })
}

/// A probe that has no client outside the cluster (a case that loaded
/// never asks: the catalog checks the fit).
fn not_from_outside(client: &str, probe: &Probe) -> ProbeError {
    ProbeError::NoReport {
        pod: client.into(),
        status: probe.describe(),
        stderr: ClientPlacement::External
            .cannot_run(probe)
            .unwrap_or_default()
            .into(),
    }
}

/// The name evidence gives a container client.
pub const CONTAINER_CLIENT: &str = "fresh container";

/// Runs `probe` from a new container of the probe `image` on the kind
/// network, as the probe pods run: not root, no capabilities.
pub async fn run_in_container(
    docker: &std::path::Path,
    image: &str,
    probe: &Probe,
    facts: &Facts,
) -> Result<Observation, ProbeError> {
    if matches!(probe, Probe::Dns { .. } | Probe::ApiWarnings(_)) {
        return Err(not_from_outside(CONTAINER_CLIENT, probe));
    }
    let cmd = super::command(probe, facts);
    let (owned, pid) = (docker::owned_label(), docker::pid_label());
    let mut args: Vec<&str> = vec![
        "run",
        "--rm",
        "--network",
        KIND_NETWORK,
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--label",
        &owned,
        "--label",
        &pid,
        "--entrypoint",
        &cmd[0],
        image,
    ];
    args.extend(cmd[1..].iter().map(String::as_str));
    let out = crate::cluster::command::run(docker, &args, super::deadline(probe))
        .await
        .map_err(|e| ProbeError::NoReport {
            pod: CONTAINER_CLIENT.into(),
            status: "docker run failed".into(),
            stderr: e.to_string(),
        })?;
    let report = parse(probe, &out).ok_or_else(|| ProbeError::NoReport {
        pod: CONTAINER_CLIENT.into(),
        status: cmd.join(" "),
        stderr: out.chars().take(400).collect(),
    })?;
    Ok(Observation {
        client_pod: CONTAINER_CLIENT.into(),
        client_node: format!("the {KIND_NETWORK} docker network"),
        // Known only inside the container, which is gone.
        client_ip: String::new(),
        command: std::iter::once(format!("(docker run {image})"))
            .chain(cmd)
            .collect(),
        report,
        raw: out.trim().to_string(),
    })
}

fn to_json(report: &impl serde::Serialize) -> String {
    serde_json::to_string(report).unwrap_or_default()
}

/// The address this host sends from toward `host:port` (the route's source),
/// found without sending anything: what a backend that keeps the source
/// address sees.
pub fn source_address(target: &str) -> Option<IpAddr> {
    let addr: SocketAddr = target.to_socket_addrs().ok()?.next()?;
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(addr).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_toward_loopback_is_loopback() {
        assert_eq!(
            source_address("127.0.0.1:30066"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(source_address("not an address"), None);
    }

    #[tokio::test]
    async fn an_external_http_check_reads_back_as_an_observation() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(svcconf_probe::ServeState::new("web-a", "127.0.0.1"));
        tokio::spawn(svcconf_probe::run_http(listener, state));
        let probe = Probe::Http {
            target: format!("127.0.0.1:{port}"),
            count: 3,
            path: "/".into(),
            interval_ms: 0,
        };
        let obs = run(&probe, &Facts::default()).await.unwrap();
        let crate::model::ProbeReport::Http(r) = &obs.report else {
            panic!("{obs:?}")
        };
        assert_eq!((r.count, r.ok), (3, 3));
        assert_eq!(r.backends["web-a"], 3);
        assert_eq!(obs.client_ip, "127.0.0.1");
        assert!(r.client_ips.contains_key("127.0.0.1"), "{r:?}");
    }
}

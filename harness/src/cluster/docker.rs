//! Containers svcconf starts next to kind clusters (servers outside the
//! cluster, fresh probe clients), on kind's docker network, and the labels
//! by which everything svcconf owns is found again: a crashed run's
//! containers are removed by the next run.

use std::time::Duration;

use super::command;
use crate::kube::namespace::{MANAGED_BY, MANAGED_BY_KEY};
use crate::model::{scaled, IpFamily};

/// The docker network kind puts every cluster's nodes on; kind creates it on
/// first use and never removes it.
pub const KIND_NETWORK: &str = "kind";
/// The label naming the process that started a container, so a later run
/// can tell a dead run's leftovers from a live run's containers.
const PID_KEY: &str = "svcconf.io/pid";

pub const DOCKER_DEADLINE: Duration = Duration::from_secs(20);

/// `app.kubernetes.io/managed-by=svcconf`, as a `--label` value.
pub fn owned_label() -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY}")
}

/// `svcconf.io/pid=<this process>`, as a `--label` value.
pub fn pid_label() -> String {
    format!("{PID_KEY}={}", std::process::id())
}

/// The docker name of a case's container: unique per case run.
pub fn container_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

/// The address of `container` in `family` on the `kind` network.
pub async fn container_ip(container: &str, family: IpFamily) -> Result<String, String> {
    let docker = command::which("docker").ok_or("no docker to ask for a container address")?;
    let field = match family {
        IpFamily::Ipv4 => "IPAddress",
        IpFamily::Ipv6 => "GlobalIPv6Address",
    };
    let format = format!("{{{{.NetworkSettings.Networks.{KIND_NETWORK}.{field}}}}}");
    let out = command::run(
        &docker,
        &["inspect", "-f", &format, container],
        scaled(DOCKER_DEADLINE),
    )
    .await
    .map_err(|e| e.to_string())?;
    let ip = out.trim().to_string();
    if ip.is_empty() {
        return Err(format!(
            "container {container} has no {family} address on network {KIND_NETWORK}"
        ));
    }
    Ok(ip)
}

/// Removes the containers svcconf runs that died (their process is gone,
/// e.g. after `kill -9`) left behind; returns their names.
pub async fn remove_leftovers(docker: &std::path::Path) -> Vec<String> {
    let filter = format!("label={}", owned_label());
    let format = format!("{{{{.Names}}}} {{{{.Label \"{PID_KEY}\"}}}}");
    let Ok(out) = command::run(
        docker,
        &["ps", "-a", "--filter", &filter, "--format", &format],
        scaled(DOCKER_DEADLINE),
    )
    .await
    else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for (name, pid) in leftovers(&out, |pid| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }) {
        if command::run(docker, &["rm", "-f", &name], scaled(DOCKER_DEADLINE))
            .await
            .is_ok()
        {
            removed.push(format!("{name} (of process {pid})"));
        }
    }
    removed
}

/// `(name, pid)` of each `name pid` line whose process is not alive; a
/// container without a pid label is left alone (not known to be dead).
fn leftovers(listing: &str, alive: impl Fn(u32) -> bool) -> Vec<(String, u32)> {
    listing
        .lines()
        .filter_map(|l| {
            let (name, pid) = l.trim().split_once(' ')?;
            let pid: u32 = pid.trim().parse().ok()?;
            (!alive(pid)).then(|| (name.to_string(), pid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containers_of_dead_processes_are_leftovers() {
        let listing = "svcconf-a-server 100\nsvcconf-b-server 200\nsomeone-else \n";
        assert_eq!(
            leftovers(listing, |pid| pid == 200),
            vec![("svcconf-a-server".to_string(), 100)]
        );
    }
}

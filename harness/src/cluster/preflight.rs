//! Checks made before any cluster is created: can this host run the mode at
//! all, and is there a Docker engine for kind. A mode the kernel cannot run
//! is reported as unavailable, never hung on and never passed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::command::{self, CommandError};
use crate::model::ProxyMode;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("docker is missing: no `docker` on PATH (kind runs every node as a Docker container)")]
    DockerMissing,
    #[error("docker is installed but its engine does not answer (is dockerd running? `ci/kit/kit docker` starts one)")]
    DockerDown(#[source] CommandError),
}

/// Why `mode` cannot run on this host's kernel, if it cannot. kind nodes are
/// containers, so kube-proxy uses the host's kernel.
pub fn mode_unavailable(mode: ProxyMode) -> Option<String> {
    mode_unavailable_at(mode, Path::new("/"))
}

fn mode_unavailable_at(mode: ProxyMode, root: &Path) -> Option<String> {
    let release =
        std::fs::read_to_string(root.join("proc/sys/kernel/osrelease")).unwrap_or_default();
    let release = release.trim();
    match mode {
        ProxyMode::Iptables => None,
        ProxyMode::Nftables => match kernel_version(release) {
            // kube-proxy's nftables mode needs kernel 5.13 or later.
            Some(v) if v < (5, 13) => Some(format!(
                "nftables mode needs kernel >= 5.13; this host runs {release}"
            )),
            _ => None,
        },
        ProxyMode::Ipvs => {
            if ipvs_present(root, release) {
                None
            } else {
                Some(format!(
                    "ipvs mode is unavailable: kernel {release} has no IP_VS \
                     (no /sys/module/ip_vs, no /proc/net/ip_vs, no ip_vs module in /lib/modules/{release}); \
                     ci/kit/ipvs runs the ipvs cases in a Debian VM whose kernel has it"
                ))
            }
        }
        ProxyMode::Other => Some(
            "kind clusters run kube-proxy; `other` is a cluster whose Services another proxy programs (--provider kubeconfig)".into(),
        ),
    }
}

/// IP_VS is loaded, built in, or loadable as a module (what `modprobe -n
/// ip_vs` checks, read from the module index instead of exec'ing).
fn ipvs_present(root: &Path, release: &str) -> bool {
    if root.join("sys/module/ip_vs").exists() || root.join("proc/net/ip_vs").exists() {
        return true;
    }
    let modules: PathBuf = root.join("lib/modules").join(release);
    ["modules.dep", "modules.builtin"].iter().any(|index| {
        std::fs::read_to_string(modules.join(index))
            .map(|text| {
                text.lines().any(|l| {
                    l.split(':')
                        .next()
                        .is_some_and(|m| m.ends_with("/ip_vs.ko") || m.contains("/ip_vs.ko."))
                })
            })
            .unwrap_or(false)
    })
}

fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The host's `/sys/fs/cgroup` is not a cgroup2 filesystem (a cgroup v1 or
/// hybrid host). kind nodes share the host's cgroups, so a kubelet >= v1.35
/// there needs `failCgroupV1: false`.
pub fn host_cgroup_v1() -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    cgroup_v1_from_mounts(&mounts)
}

/// From a `/proc/self/mounts` text: the last mount at `/sys/fs/cgroup` (the
/// one in effect) is not of type cgroup2.
fn cgroup_v1_from_mounts(mounts: &str) -> bool {
    let fstype = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, point, fstype) = (f.next()?, f.next()?, f.next()?);
            (point == "/sys/fs/cgroup").then_some(fstype)
        })
        .next_back();
    fstype != Some("cgroup2")
}

/// Docker is on PATH and its engine answers.
pub async fn docker_available() -> Result<PathBuf, PreflightError> {
    let docker = command::which("docker").ok_or(PreflightError::DockerMissing)?;
    command::run(
        &docker,
        &["version", "--format", "{{.Server.Version}}"],
        crate::model::scaled(Duration::from_secs(30)),
    )
    .await
    .map_err(PreflightError::DockerDown)?;
    Ok(docker)
}

/// Host limits that break kind clusters in confusing ways (kubelet "too many
/// open files" on inotify, nodes never Ready), as warnings with the fix.
pub fn kind_host_warnings() -> Vec<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let mut out = Vec::new();
    for (path, min) in [
        ("/proc/sys/fs/inotify/max_user_instances", 512),
        ("/proc/sys/fs/inotify/max_user_watches", 524288),
    ] {
        if let Some(v) = read(path).filter(|v| *v < min) {
            let key = path.trim_start_matches("/proc/sys/").replace('/', ".");
            out.push(format!(
                "{key} is {v}; kind nodes need about {min} (sysctl -w {key}={min})"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(release: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(
            dir.path().join("proc/sys/kernel/osrelease"),
            format!("{release}\n"),
        )
        .unwrap();
        dir
    }

    #[test]
    fn ipvs_missing_is_reported_with_the_reason() {
        let root = fake_root("6.18.0");
        let reason = mode_unavailable_at(ProxyMode::Ipvs, root.path()).unwrap();
        assert!(reason.contains("kernel 6.18.0 has no IP_VS"), "{reason}");
        assert_eq!(mode_unavailable_at(ProxyMode::Iptables, root.path()), None);
        assert_eq!(mode_unavailable_at(ProxyMode::Nftables, root.path()), None);
    }

    #[test]
    fn ipvs_as_a_loadable_module_counts() {
        let root = fake_root("6.1.0-amd64");
        let dir = root.path().join("lib/modules/6.1.0-amd64");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/net/netfilter/ipvs/ip_vs.ko.xz: kernel/net/netfilter/nf_conntrack.ko.xz\n",
        )
        .unwrap();
        assert_eq!(mode_unavailable_at(ProxyMode::Ipvs, root.path()), None);
    }

    #[test]
    fn cgroup_version_from_the_mount_at_sys_fs_cgroup() {
        // This project's machines: v1 controllers, cgroup2 only at unified.
        let v1 = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
                  cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
                  cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert!(cgroup_v1_from_mounts(v1));
        let v2 = "proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n";
        assert!(!cgroup_v1_from_mounts(v2));
        // Mounted over: the last one counts.
        assert!(cgroup_v1_from_mounts(&format!(
            "{v2}tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
        )));
    }

    #[test]
    fn old_kernels_cannot_run_nftables() {
        let root = fake_root("5.10.0-28-amd64");
        assert!(mode_unavailable_at(ProxyMode::Nftables, root.path())
            .unwrap()
            .contains(">= 5.13"));
    }
}

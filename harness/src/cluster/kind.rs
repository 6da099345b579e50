//! kind: one cluster per proxy mode, named `svcconf-<mode>`, reused when it
//! already exists, deleted at exit only when this run created it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use super::command::{self, CommandError};
use super::docker::KIND_NETWORK;
use super::kit::Kit;
use super::preflight::host_cgroup_v1;
use crate::model::{scaled, IpFamilies};

/// Creating a cluster on a 2-core machine takes minutes; this is the point
/// where it is broken rather than slow.
const CREATE_DEADLINE: Duration = Duration::from_secs(600);
const SHORT_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("kind is not installed: {0}")]
    NotFound(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("kind printed a kubeconfig for {name} that kube cannot read")]
    Kubeconfig {
        name: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("kind config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
}

/// What a kubelet >= v1.35 needs to start on a cgroup v1 host (it refuses
/// cgroup v1 by default); older kubelets accept the field.
const CGROUP_V1_PATCH: &str = "kind: KubeletConfiguration\nfailCgroupV1: false\n";
const CGROUP_V1_NOTE: &str = "host is cgroup v1: kubelet gets failCgroupV1: false";

/// The kind config a cluster is created with on this host: `text` as it is,
/// or, when `cgroup_v1`, with a `kubeadmConfigPatches` entry setting the
/// kubelet's `failCgroupV1: false`, appended to the list the config may
/// already have. kind applies the patch to the init configuration; joining
/// nodes read the kubelet configuration kubeadm uploaded. The derived config
/// is JSON, which kind reads like any YAML.
pub fn kind_config_for_host(text: &str, cgroup_v1: bool) -> Result<String, String> {
    if !cgroup_v1 {
        return Ok(text.to_string());
    }
    derive_config(text, |map| {
        let patches = map
            .entry("kubeadmConfigPatches")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if patches.is_null() {
            *patches = serde_json::Value::Array(Vec::new());
        }
        patches
            .as_array_mut()
            .ok_or("kubeadmConfigPatches is not a list")?
            .push(CGROUP_V1_PATCH.into());
        Ok(())
    })
}

/// The kind config for a cluster of `families`: `text` as it is for IPv4
/// (kind's default), else with `networking.ipFamily` set (`dual`, `ipv6`).
pub fn kind_config_for_families(text: &str, families: IpFamilies) -> Result<String, String> {
    if families == IpFamilies::Ipv4 {
        return Ok(text.to_string());
    }
    derive_config(text, |map| {
        map.entry("networking")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or("networking is not a mapping")?
            .insert("ipFamily".into(), families.as_str().into());
        Ok(())
    })
}

/// A kind config read, changed by `edit` at its top level, and written as
/// JSON (which kind reads like any YAML).
fn derive_config(
    text: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> Result<(), &'static str>,
) -> Result<String, String> {
    let mut config: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| format!("not YAML kind can read: {e}"))?;
    let map = config
        .as_object_mut()
        .ok_or("the kind config is not a mapping")?;
    edit(map)?;
    serde_json::to_string_pretty(&config).map_err(|e| e.to_string())
}

/// `config` as this host needs it: the file itself, or a derived copy in the
/// temp directory (returned second, for removal) on a cgroup v1 host.
fn config_for_host(name: &str, config: &Path) -> Result<(PathBuf, Option<PathBuf>), KindError> {
    if !host_cgroup_v1() {
        return Ok((config.to_path_buf(), None));
    }
    let fail = |reason: String| KindError::Config {
        path: config.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(config).map_err(|e| fail(e.to_string()))?;
    let derived = kind_config_for_host(&text, true).map_err(fail)?;
    let path =
        std::env::temp_dir().join(format!("svcconf-{name}-{}.kind.json", std::process::id()));
    std::fs::write(&path, derived).map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
    static NOTE: Once = Once::new();
    NOTE.call_once(|| eprintln!("svcconf: {CGROUP_V1_NOTE}"));
    tracing::info!(cluster = name, "{CGROUP_V1_NOTE}");
    Ok((path.clone(), Some(path)))
}

/// The kind binary.
#[derive(Debug, Clone)]
pub struct Kind {
    bin: PathBuf,
    /// This run created kind's docker network, so it removes it once unused.
    created_network: Arc<AtomicBool>,
}

/// A kind cluster this run uses.
#[derive(Debug, Clone)]
pub struct KindCluster {
    pub name: String,
    /// This run created it (so this run deletes it unless asked to keep it).
    pub created: bool,
    pub kubeconfig: kube::config::Kubeconfig,
}

impl Kind {
    /// The kit's kind when the kit is present, else `kind` on PATH.
    pub fn locate(kit: Option<&Kit>) -> Result<Self, KindError> {
        if let Some(kit) = kit {
            if kit.kind.is_file() {
                return Ok(Kind::at(kit.kind.clone()));
            }
        }
        command::which("kind").map(Kind::at).ok_or_else(|| {
            KindError::NotFound(
                "no `kind` on PATH and no kit (ci/kit/kit build); see https://kind.sigs.k8s.io"
                    .into(),
            )
        })
    }

    fn at(bin: PathBuf) -> Self {
        Kind {
            bin,
            created_network: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Names of the kind clusters that exist.
    pub async fn clusters(&self) -> Result<Vec<String>, KindError> {
        self.names(&["get", "clusters"]).await
    }

    /// Names of the node containers of the cluster `name`.
    pub async fn nodes(&self, name: &str) -> Result<Vec<String>, KindError> {
        self.names(&["get", "nodes", "--name", name]).await
    }

    /// The names `kind get ...` prints, one a line.
    async fn names(&self, args: &[&str]) -> Result<Vec<String>, KindError> {
        let out = command::run(&self.bin, args, scaled(SHORT_DEADLINE)).await?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// Reuses the cluster `name` if it exists, else creates it from `config`
    /// with `node_image` (kind's default image when `None`).
    pub async fn ensure(
        &self,
        name: &str,
        config: &Path,
        node_image: Option<&str>,
    ) -> Result<KindCluster, KindError> {
        let created = if self.clusters().await?.iter().any(|c| c == name) {
            tracing::info!(cluster = name, "reusing existing kind cluster");
            false
        } else {
            // kind would otherwise merge the new context into ~/.kube/config.
            let kubeconfig = std::env::temp_dir()
                .join(format!("svcconf-{name}-{}.kubeconfig", std::process::id()));
            let kubeconfig_arg = kubeconfig.display().to_string();
            let (config, derived) = config_for_host(name, config)?;
            let config_arg = config.display().to_string();
            let mut args = vec![
                "create",
                "cluster",
                "--name",
                name,
                "--config",
                &config_arg,
                "--kubeconfig",
                &kubeconfig_arg,
            ];
            if let Some(image) = node_image {
                args.extend(["--image", image]);
            }
            let network_existed = network_exists().await;
            let result = command::run(&self.bin, &args, scaled(CREATE_DEADLINE)).await;
            let _ = std::fs::remove_file(&kubeconfig);
            if let Some(derived) = derived {
                let _ = std::fs::remove_file(derived);
            }
            if !network_existed && network_exists().await {
                self.created_network.store(true, Ordering::SeqCst);
            }
            if let Err(e) = result {
                // kind removes the nodes of a failed create itself; the
                // network is ours to remove.
                self.release_network().await;
                return Err(e.into());
            }
            true
        };
        let text = command::run(
            &self.bin,
            &["get", "kubeconfig", "--name", name],
            scaled(SHORT_DEADLINE),
        )
        .await?;
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(&text).map_err(|source| KindError::Kubeconfig {
                name: name.to_string(),
                source,
            })?;
        Ok(KindCluster {
            name: name.to_string(),
            created,
            kubeconfig,
        })
    }

    /// Loads local Docker images into every node of `name` (kind skips the
    /// ones a node already has).
    pub async fn load_images(&self, name: &str, images: &[String]) -> Result<(), KindError> {
        self.load_images_into(name, images, &[]).await
    }

    /// [`Kind::load_images`] into only these nodes (all when empty).
    pub async fn load_images_into(
        &self,
        name: &str,
        images: &[String],
        nodes: &[String],
    ) -> Result<(), KindError> {
        let nodes = nodes.join(",");
        for image in images {
            let mut args = vec!["load", "docker-image", image, "--name", name];
            if !nodes.is_empty() {
                args.extend(["--nodes", &nodes]);
            }
            command::run(&self.bin, &args, scaled(CREATE_DEADLINE)).await?;
        }
        Ok(())
    }

    /// Deletes the cluster; tried twice, because a loaded Docker engine can
    /// fail `docker rm -f` once ("did not receive an exit event") and then
    /// succeed on the stopped containers (seen here).
    pub async fn delete(&self, name: &str) -> Result<(), KindError> {
        let args = ["delete", "cluster", "--name", name];
        if let Err(first) = command::run(&self.bin, &args, scaled(CREATE_DEADLINE)).await {
            tracing::warn!(cluster = name, error = %first, "kind delete failed; retrying");
            command::run(&self.bin, &args, scaled(CREATE_DEADLINE)).await?;
        }
        Ok(())
    }

    /// Removes kind's docker network when this run created it and no
    /// container is attached any more; returns whether it did.
    pub async fn release_network(&self) -> bool {
        if !self.created_network.load(Ordering::SeqCst) {
            return false;
        }
        let Some(docker) = command::which("docker") else {
            return false;
        };
        let attached = command::run(
            &docker,
            &[
                "network",
                "inspect",
                "-f",
                "{{len .Containers}}",
                KIND_NETWORK,
            ],
            scaled(SHORT_DEADLINE),
        )
        .await;
        if attached.ok().as_deref().map(str::trim) != Some("0") {
            return false;
        }
        let removed = command::run(
            &docker,
            &["network", "rm", KIND_NETWORK],
            scaled(SHORT_DEADLINE),
        )
        .await
        .is_ok();
        if removed {
            self.created_network.store(false, Ordering::SeqCst);
        }
        removed
    }
}

async fn network_exists() -> bool {
    let Some(docker) = command::which("docker") else {
        return false;
    };
    command::run(
        &docker,
        &["network", "inspect", KIND_NETWORK],
        scaled(SHORT_DEADLINE),
    )
    .await
    .is_ok()
}

/// The subnets of kind's docker network, IPv4 first (`172.18.0.0/16` and
/// `fc00:f853:ccd:e793::/64` usually): where LoadBalancer addresses
/// reachable from this host come from.
pub async fn kind_network_subnets() -> Result<Vec<String>, String> {
    let docker = command::which("docker").ok_or("no docker to ask for the kind network")?;
    let out = command::run(
        &docker,
        &[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            KIND_NETWORK,
        ],
        scaled(SHORT_DEADLINE),
    )
    .await
    .map_err(|e| format!("docker network inspect {KIND_NETWORK}: {e}"))?;
    let mut subnets: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    subnets.sort_by_key(|s| s.contains(':'));
    if !subnets.first().is_some_and(|s| s.contains('.')) {
        return Err(format!(
            "the docker network {KIND_NETWORK} has no IPv4 subnet ({out:?})"
        ));
    }
    Ok(subnets)
}

/// Whether the local Docker engine has `image` (only those can be loaded
/// into kind; anything else the nodes pull themselves).
pub async fn docker_has_image(docker: &Path, image: &str) -> bool {
    command::run(
        docker,
        &["image", "inspect", "--format", "{{.Id}}", image],
        scaled(SHORT_DEADLINE),
    )
    .await
    .is_ok()
}

/// kube-proxy's rules on a kind node, the lines that mention `filter` (a
/// case namespace): evidence for a failed routing check.
pub async fn proxy_rules(
    docker: &Path,
    node: &str,
    mode: crate::model::ProxyMode,
    filter: &str,
) -> String {
    let args: &[&str] = match mode {
        // Both families' rules (IPv6 Services are in the ip6 tables).
        crate::model::ProxyMode::Iptables => &[
            "exec",
            node,
            "sh",
            "-c",
            "iptables-save -t nat; ip6tables-save -t nat 2>/dev/null; true",
        ],
        crate::model::ProxyMode::Nftables => &[
            "exec",
            node,
            "sh",
            "-c",
            "nft list table ip kube-proxy; nft list table ip6 kube-proxy 2>/dev/null; true",
        ],
        crate::model::ProxyMode::Ipvs => &["exec", node, "ipvsadm", "-Ln"],
        crate::model::ProxyMode::Other => &["exec", node, "nft", "list", "ruleset"],
    };
    match command::run(docker, args, scaled(SHORT_DEADLINE)).await {
        Ok(out) => {
            let lines: Vec<&str> = out
                .lines()
                .filter(|l| l.contains(filter))
                .take(80)
                .collect();
            format!(
                "{} on {node} ({} lines mentioning {filter}):\n{}",
                args[2..].join(" "),
                lines.len(),
                lines.join("\n")
            )
        }
        Err(e) => format!("{} on {node}: {e}", args[2..].join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dual_and_ipv6_clusters_set_networking_ipfamily() {
        let text = std::fs::read_to_string(configs().join("nftables.yaml")).unwrap();
        assert_eq!(
            kind_config_for_families(&text, IpFamilies::Ipv4).unwrap(),
            text
        );
        for families in [IpFamilies::Dual, IpFamilies::Ipv6] {
            let derived: serde_json::Value =
                serde_saphyr::from_str(&kind_config_for_families(&text, families).unwrap())
                    .unwrap();
            assert_eq!(derived["networking"]["ipFamily"], families.as_str());
            assert_eq!(derived["networking"]["kubeProxyMode"], "nftables");
            assert_eq!(derived["nodes"].as_array().unwrap().len(), 3);
        }
    }

    fn configs() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kind-configs")
    }

    #[test]
    fn a_cgroup_v2_host_gets_the_config_unchanged() {
        let text = std::fs::read_to_string(configs().join("nftables.yaml")).unwrap();
        assert_eq!(kind_config_for_host(&text, false).unwrap(), text);
    }

    #[test]
    fn a_cgroup_v1_host_gets_failcgroupv1_false() {
        for mode in ["iptables", "nftables", "ipvs"] {
            let text = std::fs::read_to_string(configs().join(format!("{mode}.yaml"))).unwrap();
            let original: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            let derived: serde_json::Value =
                serde_saphyr::from_str(&kind_config_for_host(&text, true).unwrap()).unwrap();
            let patches = derived["kubeadmConfigPatches"].as_array().unwrap();
            assert_eq!(patches.last().unwrap(), CGROUP_V1_PATCH, "{mode}");
            // Everything else is as it was: an existing patch list is extended.
            let mut without = derived.clone();
            let list = without["kubeadmConfigPatches"].as_array_mut().unwrap();
            list.pop();
            if original.get("kubeadmConfigPatches").is_none() {
                assert!(list.is_empty());
                without
                    .as_object_mut()
                    .unwrap()
                    .remove("kubeadmConfigPatches");
            }
            assert_eq!(without, original, "{mode}");
            assert_eq!(derived["networking"]["kubeProxyMode"], mode);
        }
        let ipvs = std::fs::read_to_string(configs().join("ipvs.yaml")).unwrap();
        let derived = kind_config_for_host(&ipvs, true).unwrap();
        assert!(derived.contains("strictARP: true"), "{derived}");
    }

    #[test]
    fn a_config_it_cannot_extend_is_an_error() {
        assert!(
            kind_config_for_host("kind: Cluster\nkubeadmConfigPatches: {a: b}\n", true).is_err()
        );
        assert!(kind_config_for_host("- a\n", true).is_err());
        let empty = kind_config_for_host("kind: Cluster\nkubeadmConfigPatches:\n", true).unwrap();
        assert!(empty.contains("failCgroupV1"), "{empty}");
    }
}

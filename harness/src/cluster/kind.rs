//! kind: one cluster per proxy mode, named `svcconf-<mode>`, reused when it
//! already exists, deleted at exit only when this run created it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::command::{self, CommandError};
use super::kit::Kit;

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
}

/// The docker network kind puts every cluster's nodes on; kind creates it on
/// first use and never removes it.
const KIND_NETWORK: &str = "kind";

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
        let out = command::run(&self.bin, &["get", "clusters"], SHORT_DEADLINE).await?;
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
            let result = command::run(&self.bin, &args, CREATE_DEADLINE).await;
            let _ = std::fs::remove_file(&kubeconfig);
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
            SHORT_DEADLINE,
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
            command::run(&self.bin, &args, CREATE_DEADLINE).await?;
        }
        Ok(())
    }

    /// Deletes the cluster; tried twice, because a loaded Docker engine can
    /// fail `docker rm -f` once ("did not receive an exit event") and then
    /// succeed on the stopped containers (seen here).
    pub async fn delete(&self, name: &str) -> Result<(), KindError> {
        let args = ["delete", "cluster", "--name", name];
        if let Err(first) = command::run(&self.bin, &args, CREATE_DEADLINE).await {
            tracing::warn!(cluster = name, error = %first, "kind delete failed; retrying");
            command::run(&self.bin, &args, CREATE_DEADLINE).await?;
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
            SHORT_DEADLINE,
        )
        .await;
        if attached.ok().as_deref().map(str::trim) != Some("0") {
            return false;
        }
        let removed = command::run(&docker, &["network", "rm", KIND_NETWORK], SHORT_DEADLINE)
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
        SHORT_DEADLINE,
    )
    .await
    .is_ok()
}

/// The IPv4 subnet of kind's docker network (`172.18.0.0/16` usually):
/// where LoadBalancer addresses reachable from this host come from.
pub async fn kind_network_subnet() -> Result<String, String> {
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
        SHORT_DEADLINE,
    )
    .await
    .map_err(|e| format!("docker network inspect {KIND_NETWORK}: {e}"))?;
    out.split_whitespace()
        .find(|s| s.contains('.'))
        .map(str::to_string)
        .ok_or_else(|| format!("the docker network {KIND_NETWORK} has no IPv4 subnet ({out:?})"))
}

/// Whether the local Docker engine has `image` (only those can be loaded
/// into kind; anything else the nodes pull themselves).
pub async fn docker_has_image(docker: &Path, image: &str) -> bool {
    command::run(
        docker,
        &["image", "inspect", "--format", "{{.Id}}", image],
        SHORT_DEADLINE,
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
        crate::model::ProxyMode::Iptables => &["exec", node, "iptables-save", "-t", "nat"],
        crate::model::ProxyMode::Nftables => {
            &["exec", node, "nft", "list", "table", "ip", "kube-proxy"]
        }
        crate::model::ProxyMode::Ipvs => &["exec", node, "ipvsadm", "-Ln"],
    };
    match command::run(docker, args, SHORT_DEADLINE).await {
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

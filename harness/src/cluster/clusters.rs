//! Clusters for a run: one kind cluster per proxy mode (made, or reused),
//! or the cluster a kubeconfig points at; swept of a dead run's leftovers on
//! the way up, and at the end left as the run found them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::ResourceExt;
use tokio::sync::Mutex;

use super::metallb::Installed;
use super::{
    self as cluster, Cluster, Kind, KindError, KubeconfigError, KubeconfigSource, NodeImages,
    PreflightError,
};
use crate::catalog::{CatalogError, Project};
use crate::kube::apply::Applier;
use crate::kube::namespace;
use crate::kube::wait::WaitError;
use crate::model::{scaled, ClusterInfo, Deadlines, IpFamilies, ProxyMode};

/// `kind export logs` of a 3-node cluster.
const LOGS_DEADLINE: Duration = Duration::from_secs(180);

/// Where clusters come from.
#[derive(Debug, Clone)]
pub enum Provider {
    /// One kind cluster per mode, `svcconf-<mode>`.
    Kind {
        kind: Kind,
        /// kind's own default when `None`.
        node_image: Option<String>,
        /// Local images to load into every node.
        preload: Vec<String>,
        /// The catalog, whose `kind-configs/<mode>.yaml` make the clusters.
        configs: Project,
        /// The IP families the clusters are made with (`networking.ipFamily`).
        ip_family: IpFamilies,
    },
    /// The cluster a kubeconfig points at, whatever mode it runs.
    Kubeconfig {
        source: KubeconfigSource,
        /// When the cluster turns out to be a kind cluster on this host:
        /// kind, to load images into its nodes as on a cluster svcconf made.
        kind: Option<Kind>,
        /// Local images to load into such a cluster's nodes.
        preload: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Kind(#[from] KindError),
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error("reading the cluster failed")]
    Api(#[from] kube::Error),
    #[error("cluster not ready")]
    Wait(#[from] WaitError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot write the kind config {path}")]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot derive the kind config of {cluster}: {problem}")]
    KindConfig { cluster: String, problem: String },
    #[error("cluster {cluster}: {problem}")]
    MixedModes { cluster: String, problem: String },
    #[error("cluster {cluster} runs kube-proxy in {detected}, not {wanted}")]
    ModeMismatch {
        cluster: String,
        wanted: ProxyMode,
        detected: String,
    },
}

/// A cluster this run brought up, and whether it is the run's to delete.
struct Tracked {
    mode: ProxyMode,
    kind_name: Option<String>,
    created: bool,
    client: Option<kube::Client>,
    /// What the run installed cluster-wide (kubeconfig clusters only: kind
    /// clusters are deleted, or kept with MetalLB for the next run).
    installed: Option<Arc<Installed>>,
}

/// Brings clusters up once per mode and tears down what the run made,
/// including on Ctrl-C (the tracked list is written before each step).
pub struct Clusters {
    provider: Provider,
    deadlines: Deadlines,
    tracked: Mutex<Vec<Tracked>>,
}

impl Clusters {
    pub fn new(provider: Provider, deadlines: Deadlines) -> Self {
        Clusters {
            provider,
            deadlines,
            tracked: Mutex::new(Vec::new()),
        }
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// A ready cluster for `mode`; `progress` hears about slow steps.
    pub async fn bring_up(
        &self,
        mode: ProxyMode,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Cluster, ClusterError> {
        match &self.provider {
            Provider::Kind {
                kind,
                node_image,
                preload,
                configs,
                ip_family,
            } => {
                let name = kind_name(mode, *ip_family);
                let existed = kind.clusters().await?.contains(&name);
                // Recorded before creating, so an interrupted create is deleted too.
                self.tracked.lock().await.push(Tracked {
                    mode,
                    kind_name: Some(name.clone()),
                    created: !existed,
                    client: None,
                    installed: None,
                });
                if existed {
                    progress(format!("reusing kind cluster {name}"));
                } else {
                    progress(format!(
                        "creating kind cluster {name} (node image {})",
                        node_image.as_deref().unwrap_or("kind's default")
                    ));
                }
                let config_text =
                    cluster::kind::kind_config_for_families(configs.kind_config(mode)?, *ip_family)
                        .map_err(|problem| ClusterError::KindConfig {
                            cluster: name.clone(),
                            problem: format!("kind-configs/{mode}.yaml: {problem}"),
                        })?;
                // kind reads its config from a file.
                let config = std::env::temp_dir()
                    .join(format!("svcconf-{name}-{}.kind.yaml", std::process::id()));
                std::fs::write(&config, &config_text).map_err(|source| ClusterError::Config {
                    path: config.clone(),
                    source,
                })?;
                let started = Instant::now();
                let ensured = kind.ensure(&name, &config, node_image.as_deref()).await;
                let _ = std::fs::remove_file(&config);
                let kc = ensured?;
                if kc.created {
                    progress(format!(
                        "created {name} in {:.0}s",
                        started.elapsed().as_secs_f64()
                    ));
                }
                let client =
                    cluster::connect(kc.kubeconfig, None, &format!("kind cluster {name}")).await?;
                self.track(mode, |t| t.client = Some(client.clone())).await;
                sweep(&client, &progress).await;
                if !preload.is_empty() {
                    progress(format!("loading {} into {name}", preload.join(", ")));
                    kind.load_images(&name, preload).await?;
                }
                // A reused cluster has the nodes it was made with, which
                // need not be this config's (the ipvs lane's two-node one).
                let nodes = if kc.created {
                    kind_config_nodes(&config_text)
                } else {
                    kind.nodes(&name).await?.len().max(1)
                };
                progress(format!(
                    "waiting for {nodes} nodes Ready, kube-proxy and CoreDNS in {name}"
                ));
                cluster::wait_cluster_ready(&client, nodes, self.deadlines.cluster).await?;
                let docker = crate::cluster::command::which("docker");
                let info =
                    cluster::describe_cluster(&client, mode, &name, "kind", docker.as_deref())
                        .await?;
                check_mode(&info)?;
                if let Some(docker) = &docker {
                    for name in cluster::docker::remove_leftovers(docker).await {
                        progress(format!("removed container {name}, left by a run that died"));
                    }
                }
                let workers = crate::kube::nodes::schedulable(&client).await?;
                Ok(Cluster {
                    client,
                    info,
                    node_images: docker
                        .clone()
                        .map(|d| NodeImages::new(kind.clone(), name.clone(), d, workers, preload)),
                    docker,
                    installed: Arc::default(),
                    in_pod: false,
                    may_switch_mode: true,
                })
            }
            Provider::Kubeconfig {
                source,
                kind,
                preload,
            } => {
                let client = source.connect().await?;
                let installed: Arc<Installed> = Arc::default();
                self.tracked.lock().await.push(Tracked {
                    mode,
                    kind_name: None,
                    created: false,
                    client: Some(client.clone()),
                    installed: Some(installed.clone()),
                });
                sweep(&client, &progress).await;
                let name = source.name();
                // A kind cluster on this host gets its images as one svcconf made.
                let docker = crate::cluster::command::which("docker");
                let local = match (kind, &docker) {
                    (Some(kind), Some(_)) => cluster::local_kind_cluster(&client, kind).await?,
                    _ => None,
                };
                let node_docker = local.as_ref().and(docker.as_deref());
                let info =
                    cluster::describe_cluster(&client, mode, &name, "kubeconfig", node_docker)
                        .await?;
                check_mode(&info)?;
                let mut node_images = None;
                if let (Some(kind), Some(docker)) = (kind, &docker) {
                    if let Some(kind_name) = local {
                        self.track(mode, |t| t.kind_name = Some(kind_name.clone()))
                            .await;
                        for name in cluster::docker::remove_leftovers(docker).await {
                            progress(format!("removed container {name}, left by a run that died"));
                        }
                        let mut here = Vec::new();
                        for image in preload {
                            if cluster::docker_has_image(docker, image).await {
                                here.push(image.clone());
                            }
                        }
                        if !here.is_empty() {
                            progress(format!(
                                "{name} is kind cluster {kind_name}: loading {}",
                                here.join(", ")
                            ));
                            kind.load_images(&kind_name, &here).await?;
                        }
                        let workers = crate::kube::nodes::schedulable(&client).await?;
                        node_images = Some(NodeImages::new(
                            kind.clone(),
                            kind_name,
                            docker.clone(),
                            workers,
                            &here,
                        ));
                    }
                }
                Ok(Cluster {
                    client,
                    info,
                    docker: node_images.as_ref().and(docker),
                    node_images,
                    installed,
                    in_pod: source.in_cluster() && source.context.is_none(),
                    may_switch_mode: std::env::var("SVCCONF_ALLOW_MODE_SWITCH").as_deref()
                        == Ok("1"),
                })
            }
        }
    }

    /// Changes what is tracked of `mode`'s cluster (its client once
    /// connected; the kind name of a kubeconfig cluster that is kind, so its
    /// logs can be exported).
    async fn track(&self, mode: ProxyMode, change: impl FnOnce(&mut Tracked)) {
        if let Some(t) = self
            .tracked
            .lock()
            .await
            .iter_mut()
            .find(|t| t.mode == mode)
        {
            change(t);
        }
    }

    /// Deletes the run's namespaces on every cluster, then the kind clusters
    /// the run created (unless `keep`); with `logs`, first exports each kind
    /// cluster's logs there (`<logs>/<mode>`). Returns what it did, for the
    /// terminal.
    pub async fn tear_down(
        &self,
        run_id: &str,
        keep: bool,
        logs: Option<&std::path::Path>,
    ) -> Vec<String> {
        let mut done = Vec::new();
        let tracked: Vec<Tracked> = std::mem::take(&mut *self.tracked.lock().await);
        let kind = match &self.provider {
            Provider::Kind { kind, .. } => Some(kind),
            Provider::Kubeconfig { kind, .. } => kind.as_ref(),
        };
        if let (Some(dir), Some(kind)) = (logs, kind) {
            for t in &tracked {
                let Some(name) = &t.kind_name else { continue };
                let to = dir.join(t.mode.as_str());
                let to_arg = to.display().to_string();
                let args = ["export", "logs", &to_arg, "--name", name];
                done.push(
                    match crate::cluster::command::run(kind.bin(), &args, scaled(LOGS_DEADLINE))
                        .await
                    {
                        Ok(_) => format!("{}: exported the logs of {name} to {to_arg}", t.mode),
                        Err(e) => format!("{}: could not export the logs of {name}: {e}", t.mode),
                    },
                );
            }
        }
        let namespaces = tracked
            .iter()
            .filter_map(|t| t.client.clone().map(|c| (t, c)))
            .map(|(t, client)| async move {
                // The run ends without waiting for its namespaces to finish
                // terminating (a deleted namespace is no one's to wait on;
                // the next run's sweep removes what a dead run left), unless
                // MetalLB, which their Services use, is removed next.
                let removes_metallb = match &t.installed {
                    Some(installed) => !installed.is_empty().await,
                    None => false,
                };
                let wait = removes_metallb.then_some(self.deadlines.teardown);
                let mode = t.mode;
                match namespace::delete_all(&client, Some(run_id), wait).await {
                    Ok(names) if names.is_empty() => None,
                    Ok(names) if wait.is_some() => {
                        Some(format!("{mode}: deleted {} namespaces", names.len()))
                    }
                    Ok(names) => Some(format!(
                        "{mode}: deleted {} namespaces (terminating on their own)",
                        names.len()
                    )),
                    Err(e) => Some(format!("{mode}: could not delete namespaces: {e}")),
                }
            });
        done.extend(join_all(namespaces).await.into_iter().flatten());
        for t in &tracked {
            let (Some(installed), Some(client)) = (&t.installed, &t.client) else {
                continue;
            };
            if installed.is_empty().await {
                continue;
            }
            let problems = installed.remove(&Applier::new(client.clone())).await;
            done.push(if problems.is_empty() {
                format!("{}: removed what the run installed (MetalLB)", t.mode)
            } else {
                format!(
                    "{}: could not remove all the run installed: {}",
                    t.mode,
                    problems.join("; ")
                )
            });
        }
        if let Provider::Kind { kind, .. } = &self.provider {
            for t in tracked.iter().filter(|t| t.created) {
                let Some(name) = &t.kind_name else { continue };
                if keep {
                    done.push(format!(
                        "kept kind cluster {name} (delete: kind delete cluster --name {name})"
                    ));
                    continue;
                }
                match kind.delete(name).await {
                    Ok(()) => done.push(format!("deleted kind cluster {name}")),
                    Err(e) => done.push(format!("could not delete kind cluster {name}: {e}")),
                }
            }
            if kind.release_network().await {
                done.push("removed the kind docker network this run created".into());
            }
        }
        done
    }
}

/// Undoes what a dead run of this host journaled in its case namespaces
/// (node addresses, shared objects it patched), then deletes them.
async fn sweep(client: &kube::Client, progress: &(dyn Fn(String) + Send + Sync)) {
    let leftovers = match namespace::leftovers(client).await {
        Ok(l) => l,
        Err(e) => return progress(format!("could not look for leftover namespaces: {e}")),
    };
    if leftovers.is_empty() {
        return;
    }
    let mut deleted: Vec<String> = Vec::new();
    for ns in &leftovers {
        for line in super::undo::replay(client, ns).await {
            progress(format!("undid {line}, left by a run that died"));
        }
        let name = ns.name_any();
        match namespace::delete(client, &name).await {
            Ok(()) => deleted.push(name),
            Err(e) => progress(format!("could not delete namespace {name}: {e}")),
        }
    }
    progress(format!(
        "deleting {} namespaces left by a run that died: {}",
        deleted.len(),
        deleted.join(", ")
    ));
}

/// The cluster runs one mode on every node, and it is the one asked for.
fn check_mode(info: &ClusterInfo) -> Result<(), ClusterError> {
    if let Some(Err(problem)) = info.dataplane.as_ref().map(|d| d.cluster_mode()) {
        return Err(ClusterError::MixedModes {
            cluster: info.name.clone(),
            problem,
        });
    }
    match info.detected_mode.as_deref() {
        // "(source)" follows the mode: compare the mode word only.
        Some(d) if d.split_whitespace().next() != Some(info.mode.as_str()) => {
            Err(ClusterError::ModeMismatch {
                cluster: info.name.clone(),
                wanted: info.mode,
                detected: d.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// `svcconf-<mode>`, and `-dual` / `-ipv6` after it for those families, so
/// a kept cluster of one family is never reused for another.
pub fn kind_name(mode: ProxyMode, families: IpFamilies) -> String {
    match families {
        IpFamilies::Ipv4 => format!("svcconf-{mode}"),
        other => format!("svcconf-{mode}-{other}"),
    }
}

/// Nodes a kind config declares (one control plane when it says nothing).
fn kind_config_nodes(config: &str) -> usize {
    serde_saphyr::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v.get("nodes").and_then(|n| n.as_array()).map(Vec::len))
        .filter(|n| *n > 0)
        .unwrap_or(1)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn info(mode: ProxyMode, detected: Option<&str>) -> ClusterInfo {
        ClusterInfo {
            mode,
            detected_mode: detected.map(String::from),
            name: "c".into(),
            provider: "kind".into(),
            kubernetes_version: "v1.37.2".into(),
            nodes: 3,
            families: vec![],
            service_range: None,
            dataplane: None,
        }
    }

    #[test]
    fn mode_mismatch_compares_the_mode_word() {
        let nft = Some("nftables (3 of 3 nodes, each read on the node)");
        assert!(check_mode(&info(ProxyMode::Nftables, nft)).is_ok());
        assert!(check_mode(&info(ProxyMode::Nftables, None)).is_ok());
        let err = check_mode(&info(ProxyMode::Iptables, nft)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster c runs kube-proxy in nftables (3 of 3 nodes, each read on the node), not iptables"
        );
    }

    #[test]
    fn nodes_in_different_modes_are_refused() {
        use crate::model::{Dataplane, NodeDataplane};
        let node = NodeDataplane::synced_kube_proxy;
        let mut mixed = info(ProxyMode::Nftables, Some("nftables"));
        mixed.dataplane = Some(Dataplane {
            nodes: vec![node("a", "nftables"), node("b", "iptables")],
            seconds: 0.5,
        });
        let err = check_mode(&mixed).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "cluster c: the nodes run different Service proxy modes (a nftables, b iptables)"
            ),
            "{err}"
        );
    }

    #[test]
    fn counts_kind_config_nodes() {
        let project = Project::built_in();
        for mode in ProxyMode::ALL {
            assert_eq!(
                kind_config_nodes(project.kind_config(mode).unwrap()),
                3,
                "{mode}"
            );
        }
        assert_eq!(kind_config_nodes("kind: Cluster"), 1);
    }
}

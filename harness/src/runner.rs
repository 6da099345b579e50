//! The runner: brings up a cluster per mode, runs every case in its own
//! namespace (concurrently within a mode), and emits [`Event`]s. It never
//! formats output; reporters consume the events.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use tokio::sync::{mpsc, watch, Mutex, OnceCell, RwLock};

use crate::catalog::{CatalogError, Project};
use crate::cluster::metallb::{self, Installed, Metallb, MetallbSource};
use crate::cluster::{
    self, Cluster, Kind, KindError, KubeconfigError, KubeconfigSource, NodeImages, PreflightError,
};
use crate::fixture::{Fixtures, CLIENTS_DAEMONSET};
use crate::kube::apply::Applier;
use crate::kube::jig::Jig;
use crate::kube::manifest;
use crate::kube::namespace;
use crate::kube::wait::WaitError;
use crate::model::{
    Action, Addon, Assertion, Case, CaseKey, CaseOutcome, CaseResult, ClientPlacement, Event,
    Probe, ProxyMode, Readiness, Variant,
};
use crate::probe;
use crate::resolve;
use crate::steps;
use crate::template::{self, Facts, PodFact};
use crate::verdict;

/// How long things may take before they count as broken.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// Each declared readiness of a case (upstream e2e uses 2 minutes).
    pub ready: Duration,
    /// A fresh cluster: nodes Ready, kube-proxy and CoreDNS up.
    pub cluster: Duration,
    /// Namespaces gone at teardown.
    pub teardown: Duration,
    /// kube-proxy catching up with an EndpointSlice change (upstream e2e
    /// allows 30 s): how long checks are repeated before their verdict holds.
    pub propagation: Duration,
}

/// Between two attempts of a case's checks.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often reporters hear [`Event::Tick`] while cases run.
const TICK: Duration = Duration::from_secs(5);
/// `kind export logs` of a 3-node cluster.
const LOGS_DEADLINE: Duration = Duration::from_secs(180);

/// Ctrl-C or SIGTERM (what `timeout`, CI runners and the kubelet send),
/// whichever comes first, named for the terminal.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
            _ = term.recv() => "terminated (SIGTERM)",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted (Ctrl-C)"
        }
    }
}

/// A flag that turns true on the first Ctrl-C or SIGTERM, after a line
/// saying so and what happens next (`then`); later signals are ignored, so
/// the cleanup runs to its end.
pub fn cancel_on_signal(then: &'static str) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        eprintln!("\nsvcconf: {signal}; {then} (a second signal does not stop the cleanup)");
        let _ = tx.send(true);
        // Keep the sender alive so the cleanup is not treated as a second cancel.
        std::future::pending::<()>().await;
    });
    rx
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            ready: Duration::from_secs(120),
            cluster: Duration::from_secs(300),
            teardown: Duration::from_secs(90),
            propagation: Duration::from_secs(30),
        }
    }
}

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
            } => {
                let name = format!("svcconf-{mode}");
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
                let config_text = configs.kind_config(mode)?;
                // kind reads its config from a file.
                let config = std::env::temp_dir()
                    .join(format!("svcconf-{name}-{}.kind.yaml", std::process::id()));
                std::fs::write(&config, config_text).map_err(|source| ClusterError::Config {
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
                let nodes = kind_config_nodes(config_text);
                progress(format!(
                    "waiting for {nodes} nodes Ready, kube-proxy and CoreDNS in {name}"
                ));
                cluster::wait_cluster_ready(&client, nodes, self.deadlines.cluster).await?;
                let info = cluster::describe_cluster(&client, mode, &name, "kind").await?;
                check_mode(&info.name, mode, info.detected_mode.as_deref())?;
                let docker = crate::cluster::command::which("docker");
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
                let info = cluster::describe_cluster(&client, mode, &name, "kubeconfig").await?;
                check_mode(&info.name, mode, info.detected_mode.as_deref())?;
                // A kind cluster on this host gets its images as one svcconf made.
                let docker = crate::cluster::command::which("docker");
                let mut node_images = None;
                if let (Some(kind), Some(docker)) = (kind, &docker) {
                    if let Some(kind_name) = cluster::local_kind_cluster(&client, kind).await? {
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
                    match crate::cluster::command::run(kind.bin(), &args, LOGS_DEADLINE).await {
                        Ok(_) => format!("{}: exported the logs of {name} to {to_arg}", t.mode),
                        Err(e) => format!("{}: could not export the logs of {name}: {e}", t.mode),
                    },
                );
            }
        }
        let namespaces = tracked
            .iter()
            .filter_map(|t| t.client.clone().map(|c| (t.mode, c)))
            .map(|(mode, client)| async move {
                match namespace::delete_all(&client, Some(run_id), self.deadlines.teardown).await {
                    Ok(names) if names.is_empty() => None,
                    Ok(names) => Some(format!("{mode}: deleted {} namespaces", names.len())),
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

/// Removes the namespaces a dead run of this host left on `client`'s cluster.
async fn sweep(client: &kube::Client, progress: &(dyn Fn(String) + Send + Sync)) {
    match namespace::delete_leftovers(client).await {
        Ok(names) if !names.is_empty() => progress(format!(
            "deleting {} namespaces left by a run that died: {}",
            names.len(),
            names.join(", ")
        )),
        Ok(_) => {}
        Err(e) => progress(format!("could not look for leftover namespaces: {e}")),
    }
}

fn check_mode(
    cluster: &str,
    wanted: ProxyMode,
    detected: Option<&str>,
) -> Result<(), ClusterError> {
    match detected {
        // "(source)" follows the mode: compare the mode word only.
        Some(d) if d.split_whitespace().next() != Some(wanted.as_str()) => {
            Err(ClusterError::ModeMismatch {
                cluster: cluster.to_string(),
                wanted,
                detected: d.to_string(),
            })
        }
        _ => Ok(()),
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

/// Runs cases on one ready cluster.
pub struct CaseRunner {
    pub cluster: Cluster,
    pub fixtures: Arc<Fixtures>,
    pub run_id: String,
    pub deadlines: Deadlines,
    applier: Applier,
    metallb_source: MetallbSource,
    /// Installed by the first case that needs it.
    metallb: OnceCell<Result<Arc<Metallb>, String>>,
    /// Held shared by every case run, and exclusively by a run whose
    /// sabotage breaks what all share.
    exclusive: RwLock<()>,
    /// Hears each case's phases (live view, heartbeats).
    phases: PhaseSink,
    /// What each running case (by namespace) must undo when it ends: kept
    /// here, not in the case's future, so a run cancelled mid-case (Ctrl-C,
    /// SIGTERM) still puts node addresses and shared objects back.
    pending: Mutex<std::collections::BTreeMap<String, Vec<steps::Undo>>>,
}

/// Where a running case says which phase it is in.
pub type PhaseSink = Arc<dyn Fn(&CaseKey, String) + Send + Sync>;

impl CaseRunner {
    pub fn new(
        cluster: Cluster,
        fixtures: Arc<Fixtures>,
        run_id: String,
        deadlines: Deadlines,
    ) -> Self {
        let applier = Applier::new(cluster.client.clone());
        // The kit's manifest by default; the CLI may say otherwise.
        let metallb_source = MetallbSource {
            manifest: cluster::Kit::load()
                .ok()
                .flatten()
                .and_then(|k| k.manifests.metallb),
            addresses: None,
        };
        CaseRunner {
            cluster,
            fixtures,
            run_id,
            deadlines,
            applier,
            metallb_source,
            metallb: OnceCell::new(),
            exclusive: RwLock::new(()),
            phases: Arc::new(|_, _| {}),
            pending: Mutex::default(),
        }
    }

    async fn defer(&self, namespace: &str, undo: Option<steps::Undo>) {
        if let Some(u) = undo {
            let mut pending = self.pending.lock().await;
            let list = pending.entry(namespace.to_string()).or_default();
            // The first mode switch knows the cluster as it was; a later one
            // would restore an intermediate mode.
            let mode_switch = |u: &steps::Undo| matches!(u, steps::Undo::ProxyMode { .. });
            if !(mode_switch(&u) && list.iter().any(mode_switch)) {
                list.push(u);
            }
        }
    }

    /// Undoes what cases that never finished (a cancelled run) left done,
    /// newest first; the lines say what happened.
    pub async fn undo_unfinished(&self) -> Vec<String> {
        let pending = std::mem::take(&mut *self.pending.lock().await);
        let mut done = Vec::new();
        for (ns, undo) in pending {
            for u in undo.iter().rev() {
                done.push(format!("{ns}: {}", u.run(&self.applier, &ns).await));
            }
        }
        done
    }

    /// Sends every case's phases to `sink`.
    pub fn with_phases(mut self, sink: PhaseSink) -> Self {
        self.phases = sink;
        self
    }

    /// Where MetalLB's manifest and addresses come from (`--metallb-manifest`,
    /// `--lb-addresses`); unset parts keep their defaults.
    pub fn with_metallb(mut self, source: MetallbSource) -> Self {
        if source.manifest.is_some() {
            self.metallb_source.manifest = source.manifest;
        }
        if source.addresses.is_some() {
            self.metallb_source.addresses = source.addresses;
        }
        self
    }

    /// MetalLB on this cluster, installed on first use.
    async fn metallb(&self) -> Result<Arc<Metallb>, String> {
        self.metallb
            .get_or_init(|| async {
                let mode = self.cluster.info.mode;
                let mut source = self.metallb_source.clone();
                if source.addresses.is_none() && self.cluster.node_images.is_some() {
                    let subnet = cluster::kind_network_subnet().await?;
                    source.addresses =
                        Some(metallb::AddressRange::for_kind_network(&subnet, mode)?);
                }
                let pin = metallb::Pin::load(self.fixtures.project())
                    .map_err(|e| cluster_error_chain(&e))?;
                let progress = |line: String| tracing::info!(%mode, "{line}");
                metallb::install(
                    &self.cluster.client,
                    &self.applier,
                    mode,
                    &pin,
                    &source,
                    self.fixtures.image_map(),
                    self.cluster.node_images.as_ref(),
                    &self.cluster.installed,
                    &progress,
                )
                .await
                .map(Arc::new)
                .map_err(|e| cluster_error_chain(&e))
            })
            .await
            .clone()
    }

    /// One run of `case`; always a result, never a panic or a hang past
    /// the deadlines. The namespace is deleted before returning.
    pub async fn run(&self, case: &Case, variant: Variant) -> CaseResult {
        let key = CaseKey {
            mode: self.cluster.info.mode,
            suite: case.suite.clone(),
            case: case.name.clone(),
            variant,
        };
        if let Some(reason) = self.skip_reason(case) {
            // The reason is also the evidence: JUnit consumers that drop
            // the skip message (sonobuoy) still show it.
            return CaseResult {
                key,
                outcome: CaseOutcome::Skipped {
                    reason: reason.clone(),
                },
                seconds: 0.0,
                namespace: None,
                evidence: reason,
            };
        }
        let exclusive =
            case.exclusive || (variant == Variant::Sabotaged && case.sabotage.exclusive);
        // Taken before the clock starts: waiting for the others is not the case's time.
        let (_shared, _alone) = if exclusive {
            (None, Some(self.exclusive.write().await))
        } else {
            (Some(self.exclusive.read().await), None)
        };
        let started = Instant::now();
        let phase = |p: String| (self.phases)(&key, p);
        let mut evidence = Vec::new();
        if exclusive {
            evidence.push("ran alone: its sabotage breaks what every case shares".into());
        }
        phase("creating its namespace".into());
        let client = &self.cluster.client;
        let pod_security = case.pod_security.as_str();
        let created = namespace::create(client, &case.name, &self.run_id, pod_security).await;
        let (outcome, namespace) = match created {
            Err(e) => (
                CaseOutcome::Error {
                    message: format!(
                        "cannot create the case namespace: {}",
                        cluster_error_chain(&e)
                    ),
                },
                None,
            ),
            Ok(ns) => {
                let jig = Jig::new(client.clone(), ns.clone());
                let outcome = self
                    .run_in(&jig, case, variant, &phase, &mut evidence)
                    .await;
                phase("tearing down".into());
                let undo = self.pending.lock().await.remove(&ns).unwrap_or_default();
                for u in undo.iter().rev() {
                    evidence.push(format!("teardown: {}", u.run(&self.applier, &ns).await));
                }
                if case.address_pool.is_some() {
                    if let Some(Ok(lb)) = self.metallb.get() {
                        if let Err(e) = lb.delete_case_pool(&self.applier, &ns).await {
                            evidence.push(format!(
                                "teardown: could not delete address pool {ns}: {}",
                                cluster_error_chain(&e)
                            ));
                        }
                    }
                }
                if let Err(e) = namespace::delete(client, &ns).await {
                    evidence.push(format!("teardown: could not delete namespace {ns}: {e}"));
                }
                (outcome, Some(ns))
            }
        };
        // A plain run that failed may have met a broken shared part (CoreDNS
        // down makes routing by name time out): its message names it first.
        let outcome = if variant == Variant::Plain && !outcome.is_success() {
            let problems = cluster::shared_problems(client).await;
            explained(outcome, &problems)
        } else {
            outcome
        };
        let outcome = variant_outcome(variant, outcome, &case.sabotage.description, &mut evidence);
        CaseResult {
            key,
            outcome,
            seconds: started.elapsed().as_secs_f64(),
            namespace,
            evidence: evidence.join("\n"),
        }
    }

    /// Why `case` is not run here: it switches kube-proxy's mode on a
    /// cluster svcconf may not change; or, run from a pod of the cluster
    /// itself, it needs a client or server outside the cluster, or
    /// LoadBalancer addresses nobody gave (see `cluster::inside`).
    fn skip_reason(&self, case: &Case) -> Option<String> {
        if case.switches_proxy_mode() && (self.cluster.in_pod || !self.cluster.may_switch_mode) {
            let why = "it switches kube-proxy's mode for the whole cluster: svcconf does that on \
                       the kind clusters it makes, or from outside with SVCCONF_ALLOW_MODE_SWITCH=1 \
                       (a cluster you may change)";
            return Some(match self.cluster.in_pod {
                true => format!("in-cluster run (svcconf in a pod): {why}"),
                false => why.to_string(),
            });
        }
        if !self.cluster.in_pod {
            return None;
        }
        cluster::inside::skip_reason(case, self.metallb_source.addresses.is_some())
    }

    async fn run_in(
        &self,
        jig: &Jig,
        case: &Case,
        variant: Variant,
        phase: &(dyn Fn(String) + Sync),
        evidence: &mut Vec<String>,
    ) -> CaseOutcome {
        let error = |message: String| CaseOutcome::Error { message };
        let setup_started = Instant::now();
        let objects = match self.fixtures.objects(case) {
            Ok(o) => o,
            Err(e) => return error(format!("fixtures: {}", cluster_error_chain(&e))),
        };
        if case.needs.contains(&Addon::Metallb) {
            phase("waiting for MetalLB".into());
            let lb = match self.metallb().await {
                Ok(lb) => lb,
                Err(e) => return error(format!("{}: {e}", Addon::Metallb)),
            };
            if let Some(pool) = &case.address_pool {
                match lb
                    .create_case_pool(&self.applier, &jig.namespace, pool.addresses)
                    .await
                {
                    Ok(range) => evidence.push(format!(
                        "address pool {} (only for this namespace): {range}",
                        jig.namespace
                    )),
                    Err(e) => return error(format!("address pool: {}", cluster_error_chain(&e))),
                }
            }
        }
        if let Some(nodes) = &self.cluster.node_images {
            let images: Vec<String> = objects.iter().flat_map(manifest::images).collect();
            phase(format!(
                "loading images into the nodes: {}",
                images.join(", ")
            ));
            let started = Instant::now();
            match nodes.ensure(&images, false).await {
                Ok(loaded) if !loaded.is_empty() => evidence.push(format!(
                    "loaded into the nodes in {:.0}s: {}",
                    started.elapsed().as_secs_f64(),
                    loaded.join(", ")
                )),
                Ok(_) => {}
                Err(e) => return error(e),
            }
        }
        // Fixtures may name their namespace (`mysql.${namespace}.svc.cluster.local.`).
        let facts = Facts {
            vars: [("namespace".to_string(), jig.namespace.clone())].into(),
            ..Default::default()
        };
        let objects: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| template::render_json(o, &facts))
            .collect();
        phase(format!("applying {} objects", objects.len()));
        for object in &objects {
            if let Err(e) = self.applier.apply(&jig.namespace, object).await {
                return error(format!("apply: {}", cluster_error_chain(&e)));
            }
        }
        let mut ready: Vec<Readiness> = Vec::new();
        if case.needs_client_pods() {
            ready.push(Readiness::DaemonSet(CLIENTS_DAEMONSET.into()));
        }
        ready.extend(case.ready.iter().cloned());
        let waited = Instant::now();
        phase(waiting_for(&ready));
        if let Err(message) = self.wait_all(jig, &ready).await {
            return error(message);
        }
        // Where a case's time goes (the suite's wall time is mostly this).
        evidence.push(format!(
            "ready in {:.1}s after {:.1}s of setup",
            waited.elapsed().as_secs_f64(),
            (waited - setup_started).as_secs_f64()
        ));
        if variant == Variant::Sabotaged {
            // The case must pass before its sabotage: a failure seen while
            // kube-proxy is still programming a new Service would otherwise
            // be credited to the sabotage.
            if !case.checks.is_empty() {
                let mut baseline = Vec::new();
                phase("checks before the sabotage".into());
                match self
                    .checks_until(jig, &case.checks, true, &mut baseline)
                    .await
                {
                    CaseOutcome::Passed => {
                        evidence.push("baseline: every check passed before the sabotage".into())
                    }
                    CaseOutcome::Failed { message } | CaseOutcome::Error { message } => {
                        evidence.extend(baseline);
                        return error(format!(
                            "before its sabotage the case does not pass ({message}): a failure after it would prove nothing"
                        ));
                    }
                    other => return other,
                }
            }
            evidence.push(format!("sabotage: {}", case.sabotage.description));
            phase(format!("sabotage: {}", case.sabotage.description));
            let patch = case.sabotage.patch.clone().map(Action::Patch);
            let images = self.fixtures.image_map();
            for action in patch.iter().chain(&case.sabotage.actions) {
                match steps::perform(jig, &self.applier, images, self.cluster.info.mode, action)
                    .await
                {
                    Ok((done, to_undo)) => {
                        evidence.push(format!("sabotage: {done}"));
                        self.defer(&jig.namespace, to_undo).await;
                    }
                    Err(message) => return error(format!("sabotage: {message}")),
                }
            }
            phase(format!(
                "sabotage settling: {}",
                waiting_for(&case.sabotage.settle)
            ));
            if let Err(message) = self.wait_all(jig, &case.sabotage.settle).await {
                return error(format!("sabotage did not settle: {message}"));
            }
        }
        // The first checks are retried until the verdict this variant looks
        // for (a sabotage may take a moment to reach kube-proxy); a step's
        // checks until they pass. A sabotage that only shows in a step thus
        // costs the propagation deadline before the steps start.
        if !case.checks.is_empty() {
            phase(format!(
                "checks ({})",
                case.checks
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let outcome = self
                .checks_until(jig, &case.checks, variant == Variant::Plain, evidence)
                .await;
            if outcome != CaseOutcome::Passed {
                return outcome;
            }
        }
        for step in &case.steps {
            phase(format!("step {}", step.name));
            for action in &step.actions {
                let images = self.fixtures.image_map();
                match steps::perform(jig, &self.applier, images, self.cluster.info.mode, action)
                    .await
                {
                    Ok((done, to_undo)) => {
                        evidence.push(format!("step {}: {done}", step.name));
                        self.defer(&jig.namespace, to_undo).await;
                    }
                    Err(message) => return error(format!("step {}: {message}", step.name)),
                }
            }
            let acted = Instant::now();
            let within = Duration::from_secs(step.within_seconds);
            let waits = step.settle.iter().map(|r| self.wait_one(jig, r, within));
            if let Some(Err(e)) = join_all(waits).await.into_iter().find(Result::is_err) {
                return CaseOutcome::Failed {
                    message: format!("step {}: {e}", step.name),
                };
            }
            let settled = acted.elapsed();
            let outcome = self.checks_until(jig, &step.checks, true, evidence).await;
            // A mode switch's restart-to-correct-answer time, for one.
            evidence.push(format!(
                "step {}: settled {:.1}s and its checks' verdict {:.1}s after its actions",
                step.name,
                settled.as_secs_f64(),
                acted.elapsed().as_secs_f64()
            ));
            if outcome != CaseOutcome::Passed {
                return match outcome {
                    CaseOutcome::Failed { message } => CaseOutcome::Failed {
                        message: format!("step {}: {message}", step.name),
                    },
                    other => other,
                };
            }
        }
        CaseOutcome::Passed
    }

    /// kube-proxy programs rules after the EndpointSlices change, so the
    /// first attempt may see the old state: the checks are repeated until
    /// they pass (`want_pass`) or fail (not `want_pass`), or the propagation
    /// deadline passes. The verdict and evidence are those of the last
    /// attempt.
    async fn checks_until(
        &self,
        jig: &Jig,
        checks: &[crate::model::Check],
        want_pass: bool,
        evidence: &mut Vec<String>,
    ) -> CaseOutcome {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut attempt_evidence = Vec::new();
            // Looking for a failure, the first one is enough: the checks
            // after it could only cost time (an unanswered address costs an
            // ARP timeout per request).
            let outcome = self
                .run_checks(jig, checks, !want_pass, &mut attempt_evidence)
                .await;
            let settled = match &outcome {
                CaseOutcome::Passed => want_pass,
                CaseOutcome::Failed { .. } => !want_pass,
                _ => false,
            };
            if settled || started.elapsed() >= self.deadlines.propagation {
                if attempt > 1 {
                    evidence.push(format!(
                        "verdict of attempt {attempt}, {:.1}s after the first",
                        started.elapsed().as_secs_f64()
                    ));
                }
                evidence.extend(attempt_evidence);
                return outcome;
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
    }

    /// Every check once: the first mismatch is the failure message, an
    /// error (no observation) is an error.
    async fn run_checks(
        &self,
        jig: &Jig,
        checks: &[crate::model::Check],
        stop_at_failure: bool,
        evidence: &mut Vec<String>,
    ) -> CaseOutcome {
        let mut failures = Vec::new();
        for check in checks {
            match self.check(jig, check, evidence).await {
                Ok(mismatches) => {
                    failures.extend(
                        mismatches
                            .into_iter()
                            .map(|m| format!("{}: {m}", check.name)),
                    );
                    if stop_at_failure && !failures.is_empty() {
                        break;
                    }
                }
                Err(message) => {
                    return CaseOutcome::Error {
                        message: format!("{}: {message}", check.name),
                    }
                }
            }
        }
        match failures.first() {
            None => CaseOutcome::Passed,
            Some(first) => {
                if failures.len() > 1 {
                    evidence.push(format!("all mismatches:\n  {}", failures.join("\n  ")));
                }
                CaseOutcome::Failed {
                    message: first.clone(),
                }
            }
        }
    }

    /// All waits at once (they watch different objects), each with the
    /// readiness deadline; the first failure names what did not happen.
    async fn wait_all(&self, jig: &Jig, ready: &[Readiness]) -> Result<(), String> {
        let results = join_all(
            ready
                .iter()
                .map(|r| self.wait_one(jig, r, self.deadlines.ready)),
        )
        .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            let pods = jig.unready_pods().await;
            return Err(if pods.is_empty() {
                e
            } else {
                format!("{e}\n{pods}")
            });
        }
        Ok(())
    }

    /// One readiness: the jig's, or kube-proxy's mode, which needs the
    /// cluster's mode and its nodes (polled: it reads logs and rules).
    async fn wait_one(
        &self,
        jig: &Jig,
        ready: &Readiness,
        deadline: Duration,
    ) -> Result<(), String> {
        let Readiness::ProxyMode { mode } = ready else {
            return jig
                .wait(ready, deadline)
                .await
                .map_err(|e| cluster_error_chain(&e));
        };
        let want = mode.resolve(self.cluster.info.mode)?;
        let started = Instant::now();
        let rules = match self.cluster.docker.as_deref() {
            Some(docker) => cluster::proxy_mode::Rules::Docker(docker),
            None => cluster::proxy_mode::Rules::KubeProxyPod,
        };
        loop {
            let state =
                cluster::proxy_mode::switched(&jig.client, rules, want, &jig.namespace).await;
            match state {
                Ok(_) => return Ok(()),
                Err(status) if started.elapsed() >= deadline => {
                    return Err(format!(
                        "kube-proxy not switched to {want} after {}s: {status}",
                        deadline.as_secs()
                    ))
                }
                Err(_) => tokio::time::sleep(RETRY_INTERVAL).await,
            }
        }
    }

    /// Runs one check; `Ok` holds the mismatches (empty: it passed).
    async fn check(
        &self,
        jig: &Jig,
        check: &crate::model::Check,
        evidence: &mut Vec<String>,
    ) -> Result<Vec<String>, String> {
        let mode = self.cluster.info.mode;
        let assertions = check.expectations(mode);
        let facts = self
            .facts(jig, &check.probe, assertions, &check.from)
            .await?;
        let obs = if check.from == ClientPlacement::External {
            probe::external::run(&check.probe, &facts).await
        } else if check.from == ClientPlacement::ExternalContainer {
            let docker = self.cluster.docker.as_ref().ok_or(
                "a check from a fresh container outside the cluster needs docker (kind clusters)",
            )?;
            let image = self
                .fixtures
                .image_map()
                .resolve(crate::fixture::PROBE_IMAGE);
            probe::external::run_in_container(docker, image, &check.probe, &facts).await
        } else {
            let from = self.client_for(jig, &check.from, &facts).await?;
            probe::run_in_pod(&jig.client, &jig.namespace, &from, &check.probe, &facts).await
        }
        .map_err(|e| cluster_error_chain(&e))?;
        evidence.push(format!(
            "check {} ({}) from {} on {} ({}): {}\n{}",
            check.name,
            check.probe.describe(),
            obs.client_pod,
            obs.client_node,
            obs.client_ip,
            obs.command.join(" "),
            obs.raw
        ));
        let mismatches: Vec<String> = assertions
            .iter()
            .filter_map(|a| verdict::judge(a, &obs, &facts).err())
            .collect();
        if let (false, Some(docker)) = (mismatches.is_empty(), &self.cluster.docker) {
            for node in self.nodes_involved(check, &obs.client_node, &facts).await {
                evidence.push(cluster::proxy_rules(docker, &node, mode, &jig.namespace).await);
            }
        }
        Ok(mismatches)
    }

    /// Whose proxy rules explain a failed check: the client pod's node; for
    /// a client outside the cluster, the node it sent to (a NodePort on a
    /// node's address), else every node (a LoadBalancer or external IP may
    /// be answered by any of them).
    async fn nodes_involved(
        &self,
        check: &crate::model::Check,
        client_node: &str,
        facts: &Facts,
    ) -> Vec<String> {
        if !matches!(
            check.from,
            ClientPlacement::External | ClientPlacement::ExternalContainer
        ) {
            return vec![client_node.to_string()];
        }
        let target = match &check.probe {
            Probe::Http { target, .. } | Probe::Udp { target, .. } | Probe::Tcp { target } => {
                facts.render(target)
            }
            Probe::Dns { .. } => return Vec::new(),
        };
        let host = target
            .rsplit_once(':')
            .map_or(target.as_str(), |(h, _)| h)
            .to_string();
        let nodes = crate::kube::nodes::internal_ips(&self.cluster.client)
            .await
            .unwrap_or_default();
        match nodes.iter().find(|(_, ip)| *ip == host) {
            Some((name, _)) => vec![name.clone()],
            None => nodes.into_iter().map(|(name, _)| name).collect(),
        }
    }

    /// Resolves what the probe and the assertions refer to.
    async fn facts(
        &self,
        jig: &Jig,
        probe: &Probe,
        assertions: &[Assertion],
        from: &ClientPlacement,
    ) -> Result<Facts, String> {
        let mut facts = Facts::default();
        facts.vars.insert("namespace".into(), jig.namespace.clone());
        let mut templates = match probe {
            Probe::Http { target, path, .. } => vec![target.clone(), path.clone()],
            Probe::Tcp { target } | Probe::Udp { target, .. } => vec![target.clone()],
            Probe::Dns { name, .. } => vec![name.clone()],
        };
        let mut selectors = BTreeSet::new();
        for a in assertions {
            match a {
                Assertion::Answers(answers) | Assertion::Srv(answers) => {
                    templates.extend(answers.iter().cloned())
                }
                Assertion::Backends { pods, .. } => {
                    selectors.insert(pods.clone());
                }
                Assertion::EndpointSliceShards { service, pods, .. } => {
                    selectors.insert(pods.clone());
                    let slices = jig
                        .slice_facts(service)
                        .await
                        .map_err(|e| cluster_error_chain(&e))?;
                    facts.endpoint_slices.insert(service.clone(), slices);
                }
                Assertion::BackendsOnClientNode(pods) => {
                    selectors.insert(pods.clone());
                }
                Assertion::BackendsInClientZone(pods) => {
                    selectors.insert(pods.clone());
                    facts.zones = crate::kube::nodes::zones(&jig.client)
                        .await
                        .map_err(|e| cluster_error_chain(&e))?;
                }
                _ => {}
            }
        }
        if let ClientPlacement::OtherNodeThan(s)
        | ClientPlacement::SameNodeAs(s)
        | ClientPlacement::Pod(s) = from
        {
            selectors.insert(s.clone());
        }
        facts.vars.extend(resolve::vars(jig, &templates).await?);
        for selector in selectors {
            let pods = jig
                .ready_pods(&selector)
                .await
                .map_err(|e| cluster_error_chain(&e))?;
            facts.ready_pods.insert(selector, pods);
        }
        Ok(facts)
    }

    /// Picks the client pod the placement asks for (deterministically).
    async fn client_for(
        &self,
        jig: &Jig,
        placement: &ClientPlacement,
        facts: &Facts,
    ) -> Result<PodFact, String> {
        if let ClientPlacement::Pod(sel) = placement {
            // By name, like every other choice: the same pod each attempt.
            return facts
                .ready_pods
                .get(sel)
                .and_then(|pods| pods.first())
                .cloned()
                .ok_or_else(|| format!("no Ready pod {sel} to send from"));
        }
        let clients = jig
            .client_pods()
            .await
            .map_err(|e| cluster_error_chain(&e))?;
        let nodes_of = |selector: &str| -> BTreeSet<String> {
            facts
                .ready_pods
                .get(selector)
                .map(|p| p.iter().map(|p| p.node.clone()).collect())
                .unwrap_or_default()
        };
        let (chosen, wanted) = match placement {
            ClientPlacement::AnyNode => (clients.first(), "any node".to_string()),
            ClientPlacement::External
            | ClientPlacement::ExternalContainer
            | ClientPlacement::Pod(_) => (None, "outside the cluster (not a pod)".to_string()),
            ClientPlacement::OtherNodeThan(sel) => {
                let busy = nodes_of(sel);
                (
                    clients.iter().find(|c| !busy.contains(&c.node)),
                    format!("a node without pods {sel} (they run on {})", join(&busy)),
                )
            }
            ClientPlacement::SameNodeAs(sel) => {
                let busy = nodes_of(sel);
                (
                    clients.iter().find(|c| busy.contains(&c.node)),
                    format!("a node with pods {sel} (they run on {})", join(&busy)),
                )
            }
        };
        chosen.cloned().ok_or_else(|| {
            let on: BTreeSet<String> = clients.iter().map(|c| c.node.clone()).collect();
            format!(
                "no client pod on {wanted}; client pods run on {}",
                join(&on)
            )
        })
    }
}

/// `outcome` with the shared parts' `problems` before its message.
fn explained(outcome: CaseOutcome, problems: &[String]) -> CaseOutcome {
    if problems.is_empty() {
        return outcome;
    }
    let with = |message: String| format!("{}; {message}", problems.join("; "));
    match outcome {
        CaseOutcome::Failed { message } => CaseOutcome::Failed {
            message: with(message),
        },
        CaseOutcome::Error { message } => CaseOutcome::Error {
            message: with(message),
        },
        other => other,
    }
}

/// `waiting for A, B`: a phase naming every readiness.
fn waiting_for(ready: &[Readiness]) -> String {
    let what: Vec<String> = ready.iter().map(Readiness::describe).collect();
    format!("waiting for {}", what.join(", "))
}

/// The test's outcome from the case's: a sabotaged run passes exactly when
/// the case failed (an error is still an error: no evidence either way).
fn variant_outcome(
    variant: Variant,
    outcome: CaseOutcome,
    sabotage: &str,
    evidence: &mut Vec<String>,
) -> CaseOutcome {
    match (variant, outcome) {
        (Variant::Plain, o) => o,
        (Variant::Sabotaged, CaseOutcome::Failed { message }) => {
            evidence.insert(0, format!("sabotage ({sabotage}) detected: {message}"));
            CaseOutcome::Passed
        }
        (Variant::Sabotaged, CaseOutcome::Passed) => CaseOutcome::Failed {
            message: format!(
                "expected the case to fail under sabotage ({sabotage}), but every check passed"
            ),
        },
        (Variant::Sabotaged, o) => o,
    }
}

fn join(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "no node".into()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// `error: cause: cause`, one line.
pub fn cluster_error_chain(err: &dyn std::error::Error) -> String {
    crate::cluster::error_chain(err)
}

/// What one `svcconf run` does.
#[derive(Clone)]
pub struct RunPlan {
    pub modes: Vec<ProxyMode>,
    pub cases: Vec<Case>,
    pub variants: Vec<Variant>,
    /// Cases run at once within a mode.
    pub concurrency: usize,
    pub keep_clusters: bool,
    /// `--metallb-manifest`, `--lb-addresses`.
    pub metallb: MetallbSource,
    /// Where a failed run exports its kind clusters' logs.
    pub logs_dir: Option<PathBuf>,
}

impl RunPlan {
    pub fn keys(&self) -> Vec<CaseKey> {
        let mut keys = Vec::new();
        for mode in &self.modes {
            for case in &self.cases {
                for variant in &self.variants {
                    keys.push(CaseKey {
                        mode: *mode,
                        suite: case.suite.clone(),
                        case: case.name.clone(),
                        variant: *variant,
                    });
                }
            }
        }
        keys
    }
}

/// How a run ended; [`RunStatus::exit`] is its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every run case passed or was skipped.
    Passed,
    /// A case failed or had no result.
    Failed,
    /// A cluster could not be brought up.
    Infrastructure,
    Interrupted,
}

impl RunStatus {
    pub fn exit(self) -> crate::Exit {
        match self {
            RunStatus::Passed => crate::Exit::Passed,
            RunStatus::Failed => crate::Exit::Failed,
            RunStatus::Infrastructure => crate::Exit::BadInput,
            RunStatus::Interrupted => crate::Exit::Interrupted,
        }
    }
}

/// Runs `plan`, mode after mode (one cluster at a time on a small machine),
/// sending events to `events`. Setting `cancel` to true (Ctrl-C) stops the
/// work; cleanup still runs and `RunFinished` still goes out.
pub async fn run(
    plan: &RunPlan,
    clusters: &Clusters,
    fixtures: Arc<Fixtures>,
    deadlines: &Deadlines,
    events: mpsc::UnboundedSender<Event>,
    mut cancel: watch::Receiver<bool>,
) -> RunStatus {
    let started = Instant::now();
    let run_id = namespace::random_suffix();
    let send = |e: Event| {
        let _ = events.send(e);
    };
    send(Event::RunStarted {
        planned: plan.keys(),
    });
    let failed = std::sync::atomic::AtomicBool::new(false);
    let infra = std::sync::atomic::AtomicBool::new(false);
    // Outlive `work`, so a cancelled run can undo its unfinished cases.
    let runners: Mutex<Vec<Arc<CaseRunner>>> = Mutex::default();
    let work = async {
        for &mode in &plan.modes {
            if let Some(reason) = cluster::mode_unavailable(mode)
                .filter(|_| matches!(clusters.provider(), Provider::Kind { .. }))
            {
                send(Event::ModeUnavailable { mode, reason });
                continue;
            }
            let mode_started = Instant::now();
            let progress = |message: String| {
                let _ = events.send(Event::Progress {
                    mode: Some(mode),
                    message,
                });
            };
            let cluster = match clusters.bring_up(mode, &progress).await {
                Ok(c) => c,
                Err(e) => {
                    infra.store(true, std::sync::atomic::Ordering::Relaxed);
                    send(Event::ClusterFailed {
                        mode,
                        reason: cluster_error_chain(&e),
                    });
                    continue;
                }
            };
            send(Event::ClusterReady {
                cluster: cluster.info.clone(),
                seconds: mode_started.elapsed().as_secs_f64(),
            });
            let phases = events.clone();
            let runner = Arc::new(
                CaseRunner::new(cluster, fixtures.clone(), run_id.clone(), deadlines.clone())
                    .with_metallb(plan.metallb.clone())
                    .with_phases(Arc::new(move |key: &CaseKey, phase: String| {
                        let _ = phases.send(Event::CasePhase {
                            key: key.clone(),
                            phase,
                        });
                    })),
            );
            runners.lock().await.push(runner.clone());
            let runs: Vec<(&Case, Variant)> = plan
                .cases
                .iter()
                .flat_map(|c| plan.variants.iter().map(move |v| (c, *v)))
                .collect();
            let mut results = futures::stream::iter(runs.into_iter().map(|(case, variant)| {
                let runner = &*runner;
                let send = &send;
                async move {
                    send(Event::CaseStarted {
                        key: CaseKey {
                            mode,
                            suite: case.suite.clone(),
                            case: case.name.clone(),
                            variant,
                        },
                    });
                    runner.run(case, variant).await
                }
            }))
            .buffer_unordered(plan.concurrency.max(1));
            while let Some(result) = results.next().await {
                if !result.outcome.is_success() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                send(Event::CaseFinished { result });
            }
        }
    };
    let ticks = async {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            send(Event::Tick);
        }
    };
    let interrupted = tokio::select! {
        _ = work => false,
        _ = cancel.wait_for(|c| *c) => true,
        _ = ticks => unreachable!("ticks never end"),
    };
    if interrupted {
        send(Event::Progress {
            mode: None,
            message: "interrupted: cleaning up".into(),
        });
        for runner in runners.lock().await.iter() {
            for line in runner.undo_unfinished().await {
                send(Event::Progress {
                    mode: Some(runner.cluster.info.mode),
                    message: format!("undid {line}"),
                });
            }
        }
    }
    let broken = interrupted
        || infra.load(std::sync::atomic::Ordering::Relaxed)
        || failed.load(std::sync::atomic::Ordering::Relaxed);
    let logs = plan.logs_dir.as_deref().filter(|_| broken);
    for line in clusters.tear_down(&run_id, plan.keep_clusters, logs).await {
        send(Event::Progress {
            mode: None,
            message: line,
        });
    }
    send(Event::RunFinished {
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
    });
    if interrupted {
        RunStatus::Interrupted
    } else if infra.into_inner() {
        RunStatus::Infrastructure
    } else if failed.into_inner() {
        RunStatus::Failed
    } else {
        RunStatus::Passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sabotaged_run_passes_only_when_the_case_fails() {
        let mut evidence = Vec::new();
        let failed = CaseOutcome::Failed {
            message: "via-clusterip: expected 3 distinct backends, saw 0".into(),
        };
        assert_eq!(
            variant_outcome(
                Variant::Sabotaged,
                failed.clone(),
                "selector",
                &mut evidence
            ),
            CaseOutcome::Passed
        );
        assert_eq!(
            evidence[0],
            "sabotage (selector) detected: via-clusterip: expected 3 distinct backends, saw 0"
        );
        let unnoticed = variant_outcome(
            Variant::Sabotaged,
            CaseOutcome::Passed,
            "selector",
            &mut evidence,
        );
        assert!(
            matches!(unnoticed, CaseOutcome::Failed { message } if message.contains("but every check passed"))
        );
        let error = CaseOutcome::Error {
            message: "no result".into(),
        };
        assert_eq!(
            variant_outcome(Variant::Sabotaged, error.clone(), "s", &mut evidence),
            error
        );
        assert_eq!(
            variant_outcome(Variant::Plain, failed.clone(), "s", &mut evidence),
            failed
        );
    }

    #[test]
    fn a_failure_names_the_broken_shared_part_first() {
        let failed = CaseOutcome::Failed {
            message: "via-name: expected 30/30 requests answered 200, saw 0; errors: dns 30".into(),
        };
        let dns = ["CoreDNS has no ready endpoints (Service kube-system/kube-dns)".to_string()];
        assert_eq!(
            explained(failed.clone(), &dns),
            CaseOutcome::Failed {
                message: "CoreDNS has no ready endpoints (Service kube-system/kube-dns); via-name: expected 30/30 requests answered 200, saw 0; errors: dns 30".into()
            }
        );
        assert_eq!(explained(failed.clone(), &[]), failed);
        assert_eq!(explained(CaseOutcome::Passed, &dns), CaseOutcome::Passed);
    }

    #[test]
    fn mode_mismatch_compares_the_mode_word() {
        assert!(check_mode(
            "c",
            ProxyMode::Nftables,
            Some("nftables (log of kube-system/kube-proxy-x)")
        )
        .is_ok());
        assert!(check_mode("c", ProxyMode::Nftables, None).is_ok());
        let err = check_mode(
            "c",
            ProxyMode::Nftables,
            Some("iptables (log of kube-system/kube-proxy-x)"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster c runs kube-proxy in iptables (log of kube-system/kube-proxy-x), not nftables"
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

//! One case run on one cluster: its namespace, what it needs (MetalLB, images,
//! client pods), its fixtures applied and waited on, then baseline, sabotage,
//! checks and steps, each phase named; what it changed undone at the end, or
//! by the run when it is cancelled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use tokio::sync::RwLock;

use super::check::CheckError;
use super::clients::SharedClients;
use crate::cluster::metallb::{MetallbSource, OnFirstUse};
use crate::cluster::undo::{self, Undo};
use crate::cluster::{self, Cluster};
use crate::fixture::{Fixtures, CLIENTS_DAEMONSET};
use crate::kube::apply::Applier;
use crate::kube::jig::Jig;
use crate::kube::manifest;
use crate::kube::namespace;
use crate::model::{
    scaled, Action, Addon, Case, CaseKey, CaseOutcome, CaseResult, ClientPods, ClusterSize,
    Deadlines, IpFamily, Readiness, RefusedBefore, Variant,
};
use crate::steps;
use crate::template;

use super::cluster_error_chain;

/// A case's readiness deadline per pod it starts, where that exceeds the
/// default (120 pods: 180 s).
const SECONDS_PER_POD: f64 = 1.5;
/// More pods than this, started by one run, slow every case beside it to a
/// crawl on a 2-core host (measured: 120 pods made a concurrent DNS case
/// take 105 s instead of 15 s), and two such runs overfill the nodes: such
/// a run waits for the others and runs alone.
const MANY_PODS: u64 = 50;

/// Between two attempts of a case's checks.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a check's placement may miss the same way (no client pod where
/// it asks for one, the pods it chooses among unchanged) before the case
/// ends in an error: Ready pods that stay put for this long have been placed.
const PLACEMENT_SETTLE: Duration = Duration::from_secs(5);

/// Runs cases on one ready cluster.
pub struct CaseRunner {
    pub cluster: Cluster,
    pub fixtures: Arc<Fixtures>,
    pub run_id: String,
    pub deadlines: Deadlines,
    pub(super) applier: Applier,
    /// Installed by the first case that needs it.
    metallb: OnFirstUse,
    /// Started by the first case that sends from them.
    clients: SharedClients,
    /// Held shared by every case run, and exclusively by a run whose
    /// sabotage breaks what all share.
    exclusive: RwLock<()>,
    /// Hears each case's phases (live view, heartbeats).
    phases: PhaseSink,
    /// What each running case (by namespace) must undo when it ends: kept
    /// here, not in the case's future, so a run cancelled mid-case (Ctrl-C,
    /// SIGTERM) still puts node addresses and shared objects back.
    pending: Mutex<BTreeMap<String, Vec<Undo>>>,
    /// What the cluster offers cases, read by the first case.
    capacity: tokio::sync::OnceCell<Result<crate::needs::Capacity, String>>,
    /// The nodes each running case's failed checks went through (by
    /// namespace): a failure names a broken proxy on one of them.
    involved: Mutex<BTreeMap<String, BTreeSet<String>>>,
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
        let metallb = OnFirstUse::new(MetallbSource {
            manifest: cluster::Kit::load()
                .ok()
                .flatten()
                .and_then(|k| k.manifests.metallb),
            addresses: None,
        });
        CaseRunner {
            cluster,
            fixtures,
            run_id,
            deadlines,
            applier,
            metallb,
            clients: SharedClients::default(),
            exclusive: RwLock::new(()),
            phases: Arc::new(|_, _| {}),
            pending: Mutex::default(),
            involved: Mutex::default(),
            capacity: Default::default(),
        }
    }

    /// Keeps what a case's action must undo: in memory (never locked
    /// across an await), and in the case namespace's journal, for the run
    /// after this one if this one is killed.
    async fn defer(&self, namespace: &str, u: Undo) {
        let journal = {
            let mut pending = self.pending();
            let list = pending.entry(namespace.to_string()).or_default();
            // The first mode switch knows the cluster as it was; a later one
            // would restore an intermediate mode.
            let mode_switch = |u: &Undo| matches!(u, Undo::ProxyMode { .. });
            if mode_switch(&u) && list.iter().any(mode_switch) {
                return;
            }
            list.push(u);
            list.clone()
        };
        if let Err(e) = undo::journal(&self.cluster.client, namespace, &journal).await {
            tracing::warn!(namespace, "could not journal what to undo: {e}");
        }
    }

    /// Notes that a failed check of the case in `namespace` went through
    /// `nodes`.
    pub(super) fn involve(&self, namespace: &str, nodes: Vec<String>) {
        let mut involved = self.involved.lock().unwrap_or_else(|e| e.into_inner());
        involved
            .entry(namespace.to_string())
            .or_default()
            .extend(nodes);
    }

    /// What is wrong with the Service proxy of the nodes the case's failed
    /// checks went through (a stalled, stopped or missing proxy, the case's
    /// Services missing from their rules while other nodes hold them), read now.
    async fn proxy_problems(&self, namespace: &str) -> Vec<String> {
        let nodes = {
            let mut involved = self.involved.lock().unwrap_or_else(|e| e.into_inner());
            involved.remove(namespace)
        };
        let Some(nodes) = nodes.filter(|n| !n.is_empty()) else {
            return Vec::new();
        };
        let (client, docker) = (&self.cluster.client, self.cluster.docker.as_deref());
        match cluster::dataplane::inventory(client, cluster::dataplane::Rules::from_docker(docker))
            .await
        {
            Ok(dataplane) => {
                let mut problems = dataplane.problems(Some(&nodes));
                problems.extend(
                    cluster::dataplane::unprogrammed_services(
                        client, docker, &dataplane, namespace, &nodes,
                    )
                    .await,
                );
                problems
            }
            Err(e) => vec![format!(
                "could not read the nodes' Service proxies: {}",
                cluster_error_chain(&e)
            )],
        }
    }

    /// A plain run that failed may have met a broken shared part (CoreDNS
    /// down makes routing by name time out): its message names it first. So
    /// may one whose traffic went through a node whose proxy is stalled,
    /// stopped or missing, or lacks the case's Services: the message names
    /// the node.
    async fn explain(&self, outcome: CaseOutcome, variant: Variant, ns: &str) -> CaseOutcome {
        if variant != Variant::Plain || outcome.is_success() {
            self.involved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(ns);
            return outcome;
        }
        let (mut problems, proxies) = tokio::join!(
            cluster::shared_problems(&self.cluster.client),
            self.proxy_problems(ns)
        );
        problems.extend(proxies);
        explained(outcome, &problems)
    }

    /// The undo lists; a case that panicked holding them left them usable.
    fn pending(&self) -> MutexGuard<'_, BTreeMap<String, Vec<Undo>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Undoes what cases that never finished (a cancelled run) left done,
    /// newest first; the lines say what happened.
    pub async fn undo_unfinished(&self) -> Vec<String> {
        let pending = std::mem::take(&mut *self.pending());
        let mut done = Vec::new();
        for (ns, list) in pending {
            let lines = undo::all(&self.applier, &ns, &list).await;
            done.extend(lines.into_iter().map(|l| format!("{ns}: {l}")));
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
        let mut merged = self.metallb.source().clone();
        if source.manifest.is_some() {
            merged.manifest = source.manifest;
        }
        if source.addresses.is_some() {
            merged.addresses = source.addresses;
        }
        self.metallb = OnFirstUse::new(merged);
        self
    }

    /// The end of the mode's cases: the shared client pods go.
    pub async fn finish(&self) -> Option<String> {
        self.clients.delete(&self.cluster).await
    }

    /// One run of `case`; always a result, never a panic or a hang past
    /// the deadlines. The namespace is deleted before returning.
    pub async fn run(&self, case: &Case, variant: Variant, family: Option<IpFamily>) -> CaseResult {
        let key = CaseKey {
            mode: self.cluster.info.mode,
            family,
            suite: case.suite.clone(),
            case: case.name.clone(),
            variant,
        };
        let (mut unmet, turned_off) = self.unmet_needs(case).await;
        let families = &self.cluster.info.families;
        if let Some(f) = family.filter(|f| !families.contains(f)) {
            unmet.push(format!(
                "the run asks for {f}, and the cluster has no {f}: not on every node's InternalIP, or not in its Service range"
            ));
        }
        // A dual-stack case on one family, one about a later release than
        // the API server's, or one needing what the cluster turns off, is
        // skipped whatever else it lacks.
        let not_for_cluster = case
            .single_stack_reason(families)
            .or_else(|| {
                crate::model::before_release(
                    &self.cluster.info.kubernetes_version,
                    case.since.as_deref(),
                )
            })
            .or(turned_off);
        if !unmet.is_empty() && !self.cluster.in_pod && not_for_cluster.is_none() {
            // Not run, so not passed: an error that says what is missing
            // (once: the message is all there is, no evidence beside it).
            return CaseResult {
                key,
                outcome: CaseOutcome::Error {
                    message: unmet.join("; "),
                },
                seconds: 0.0,
                namespace: None,
                evidence: String::new(),
            };
        }
        let unmet_in_pod = (!unmet.is_empty()).then(|| {
            format!(
                "in-cluster run (svcconf in a pod) on a cluster that cannot give what it needs: {}",
                unmet.join("; ")
            )
        });
        if let Some(reason) = not_for_cluster
            .or_else(|| self.skip_reason(case))
            .or(unmet_in_pod)
        {
            return CaseResult::skipped(key, reason);
        }
        let unread = BTreeMap::new();
        let gates = match self.capacity.get() {
            Some(Ok(capacity)) => &capacity.apiserver_gates,
            _ => &unread,
        };
        let refusal = case
            .refused_before
            .as_ref()
            .filter(|r| r.refused_by(&self.cluster.info.kubernetes_version, gates));
        let pods = self.pods_started(case);
        let crowded = crowded(pods);
        let exclusive = (case.runs_alone(variant) || crowded) && refusal.is_none();
        if exclusive {
            self.prepare_shared(case).await;
        }
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
            evidence.push(if case.exclusive {
                "ran alone: it changes what every case shares".into()
            } else if crowded {
                format!("ran alone: it starts {pods} pods (more than {MANY_PODS} slow every case beside them)")
            } else {
                "ran alone: its sabotage breaks what every case shares".into()
            });
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
                let in_family = family.unwrap_or(IpFamily::Ipv4);
                let dual_stack = self.cluster.info.families.len() > 1;
                let jig = Jig::new(client.clone(), ns.clone())
                    .with_family(in_family, dual_stack)
                    .with_size(self.size());
                let outcome = match refusal {
                    Some(r) => {
                        self.expect_refusal(&jig, case, r, variant, &mut evidence)
                            .await
                    }
                    None => {
                        self.run_in(&jig, case, variant, &phase, &mut evidence)
                            .await
                    }
                };
                // Read before teardown, while the case's Services are there.
                let outcome = self.explain(outcome, variant, &ns).await;
                phase("tearing down".into());
                let list = self.pending().remove(&ns).unwrap_or_default();
                let lines = undo::all(&self.applier, &ns, &list).await;
                evidence.extend(lines.into_iter().map(|l| format!("teardown: {l}")));
                if case.address_pool.is_some() {
                    if let Some(lb) = self.metallb.installed() {
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
        let sabotage = refusal.map_or(case.sabotage.in_mode(self.cluster.info.mode).0, |r| {
            &r.sabotage.description
        });
        let outcome = variant_outcome(variant, outcome, sabotage, &mut evidence);
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
        if !self.cluster.in_pod {
            return None;
        }
        if case.reconfigures_kube_proxy() {
            return Some(
                "in-cluster run (svcconf in a pod): it reconfigures kube-proxy (its mode or a \
                 feature gate) for the whole cluster: svcconf does that on the kind clusters it \
                 makes, or from outside with SVCCONF_ALLOW_MODE_SWITCH=1 (a cluster you may change)"
                    .into(),
            );
        }
        cluster::inside::skip_reason(case, self.metallb.source().addresses.is_some())
    }

    /// The needs of `case` this cluster cannot meet (see `needs`), each in
    /// one line, and why it is not for this cluster's configuration; empty
    /// and `None` when it can run. A case whose objects do not load has no
    /// needs here: it errors with the reason when it runs.
    async fn unmet_needs(&self, case: &Case) -> (Vec<String>, Option<String>) {
        let Ok(objects) = self.fixtures.objects(case) else {
            return (Vec::new(), None);
        };
        let capacity = self
            .capacity
            .get_or_init(|| async {
                let c = &self.cluster;
                let may_switch = c.may_switch_mode && !c.in_pod;
                cluster::capacity(&c.client, &c.info.name, c.docker.is_some(), may_switch)
                    .await
                    .map_err(|e| cluster_error_chain(&e))
            })
            .await;
        match capacity {
            Ok(capacity) => {
                let objects = template::sized(&objects, capacity.max_endpoints_per_slice);
                let needs = crate::needs::needs(case, &objects);
                (
                    crate::needs::unmet(&needs, capacity),
                    crate::needs::turned_off(&needs, capacity),
                )
            }
            Err(e) => (
                vec![format!("cannot read what the cluster offers: {e}")],
                None,
            ),
        }
    }

    /// The cluster's EndpointSlice size limit and node count, as read with
    /// what the cluster offers ([`ClusterSize::UNREAD`] where that could
    /// not be read).
    fn size(&self) -> ClusterSize {
        match self.capacity.get() {
            Some(Ok(capacity)) => capacity.size(),
            _ => ClusterSize::UNREAD,
        }
    }

    /// The pods the case's fixtures start on this cluster.
    fn pods_started(&self, case: &Case) -> u64 {
        pods_started(case, &self.fixtures, self.size().max_endpoints_per_slice)
    }

    /// The run of a case on an API server that refuses one of its objects
    /// (older than its release, the gate not turned on): that refusal is
    /// what Kubernetes says there, so it is asserted (a dry-run create of
    /// the object; the sabotage renames it to what every release accepts).
    async fn expect_refusal(
        &self,
        jig: &Jig,
        case: &Case,
        refused: &RefusedBefore,
        variant: Variant,
        evidence: &mut Vec<String>,
    ) -> CaseOutcome {
        let error = |message: String| CaseOutcome::Error { message };
        let version = &self.cluster.info.kubernetes_version;
        let objects = match self.fixtures.objects(case) {
            Ok(o) => o,
            Err(e) => return error(format!("fixtures: {}", cluster_error_chain(&e))),
        };
        let found = rendered(jig, &objects).into_iter().find(|o| {
            o["kind"] == refused.kind.as_str() && o["metadata"]["name"] == refused.name.as_str()
        });
        let Some(mut object) = found else {
            return error(format!(
                "refusedBefore names {} {}, which the case's fixtures do not hold",
                refused.kind, refused.name
            ));
        };
        if variant == Variant::Sabotaged {
            manifest::merge_patch(&mut object, &refused.sabotage.merge);
        }
        let shown = format!(
            "{} {}",
            refused.kind,
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        evidence.push(format!(
            "the API server is {version}: before {} it refuses {} {} unless {} is on (kube-apiserver's --feature-gates does not turn it on), so the run asserts that refusal instead of the checks",
            refused.version, refused.kind, refused.name, refused.feature_gate
        ));
        match self.applier.dry_run_create(&jig.namespace, &object).await {
            Err(crate::kube::apply::ApplyError::Refused {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 422 => {
                evidence.push(format!("refused (dry-run create): {}", status.message));
                CaseOutcome::Passed
            }
            Ok(()) => CaseOutcome::Failed {
                message: format!(
                    "expected the API server ({version}) to refuse {shown}, as releases before {} do without {}; it accepted it (dry-run create)",
                    refused.version, refused.feature_gate
                ),
            },
            Err(e) => error(format!(
                "dry-run create of {shown}: {}",
                cluster_error_chain(&e)
            )),
        }
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
        let mode = self.cluster.info.mode;
        let defer = |u| -> BoxFuture<'_, ()> { Box::pin(self.defer(&jig.namespace, u)) };
        let setup_started = Instant::now();
        let objects = match self.fixtures.objects(case) {
            Ok(o) => o,
            Err(e) => return error(format!("fixtures: {}", cluster_error_chain(&e))),
        };
        // The run's client pods (the first case starts them) come up while
        // the case's own objects do; only the checks need them.
        let shared_clients = async {
            if case.client_pods() != ClientPods::Shared {
                return None;
            }
            let ready = self.clients.namespace(
                &self.cluster,
                &self.applier,
                &self.fixtures,
                &self.run_id,
                self.deadlines.ready,
            );
            Some(ready.await)
        };
        let mut setup_evidence = Vec::new();
        let (clients, setup) = tokio::join!(
            shared_clients,
            self.set_up(jig, case, objects, phase, &mut setup_evidence)
        );
        let with_shared;
        let jig = match clients {
            Some(Ok(ns)) => {
                evidence.push(format!("client pods: the run's, in namespace {ns}"));
                with_shared = jig.clone().with_clients(ns);
                &with_shared
            }
            Some(Err(e)) => return error(format!("the run's client pods: {e}")),
            None => jig,
        };
        evidence.append(&mut setup_evidence);
        let waited = match setup {
            Ok(waited) => waited,
            Err(outcome) => return outcome,
        };
        // Where a case's time goes (the suite's wall time is mostly this).
        evidence.push(format!(
            "ready in {:.1}s after {:.1}s of setup",
            waited.elapsed().as_secs_f64(),
            (waited - setup_started).as_secs_f64()
        ));
        // Where the sabotage goes in: before the case's checks, or once a
        // named step's actions are done (what it breaks is made by a step).
        let sabotage_after = match variant {
            Variant::Sabotaged => Some(case.sabotage.after_step.as_deref()),
            Variant::Plain => None,
        };
        if sabotage_after == Some(None) {
            if let Err(outcome) = self
                .sabotage(jig, case, &case.checks, phase, &defer, evidence)
                .await
            {
                return outcome;
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
                match steps::perform(jig, &self.applier, images, mode, action, &defer).await {
                    Ok(done) => evidence.push(format!("step {}: {done}", step.name)),
                    Err(message) => return error(format!("step {}: {message}", step.name)),
                }
            }
            let acted = Instant::now();
            let within = crate::model::scaled(Duration::from_secs(step.within_seconds));
            let waits = step.settle.iter().map(|r| self.wait_one(jig, r, within));
            // Every wait that did not hold is named, not only the first:
            // one change can break several (a Service downgraded to one
            // family loses its second ClusterIP and its second slice).
            let mut missed = Vec::new();
            for (ready, waited) in step.settle.iter().zip(join_all(waits).await) {
                match waited {
                    Ok(state) => evidence.push(format!(
                        "step {}: {} held: {state}",
                        step.name,
                        ready.describe()
                    )),
                    Err(message) => missed.push(message),
                }
            }
            if !missed.is_empty() {
                return CaseOutcome::Failed {
                    message: format!("step {}: {}", step.name, missed.join("; ")),
                };
            }
            let settled = acted.elapsed();
            let sabotaged_here = sabotage_after == Some(Some(step.name.as_str()));
            if sabotaged_here {
                if let Err(outcome) = self
                    .sabotage(jig, case, &step.checks, phase, &defer, evidence)
                    .await
                {
                    return outcome;
                }
            }
            let outcome = self
                .checks_until(jig, &step.checks, !sabotaged_here, evidence)
                .await;
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

    /// A sabotaged run's sabotage: `baseline` (the checks it must break)
    /// passes first, then its patch and actions, then its settle. `Err` is
    /// the run's outcome when any of that does not happen.
    async fn sabotage(
        &self,
        jig: &Jig,
        case: &Case,
        baseline: &[crate::model::Check],
        phase: &(dyn Fn(String) + Sync),
        defer: &crate::cluster::undo::Defer<'_>,
        evidence: &mut Vec<String>,
    ) -> Result<(), CaseOutcome> {
        let error = |message: String| Err(CaseOutcome::Error { message });
        // The case must pass before its sabotage: a failure seen while
        // kube-proxy is still programming a new Service would otherwise
        // be credited to the sabotage.
        if !baseline.is_empty() {
            let mut seen = Vec::new();
            phase("checks before the sabotage".into());
            match self.checks_until(jig, baseline, true, &mut seen).await {
                CaseOutcome::Passed => {
                    evidence.push("baseline: every check passed before the sabotage".into())
                }
                CaseOutcome::Failed { message } | CaseOutcome::Error { message } => {
                    evidence.extend(seen);
                    return error(format!(
                        "before its sabotage the case does not pass ({message}): a failure after it would prove nothing"
                    ));
                }
                other => return Err(other),
            }
        }
        let mode = self.cluster.info.mode;
        let (description, patch) = case.sabotage.in_mode(mode);
        evidence.push(format!("sabotage: {description}"));
        phase(format!("sabotage: {description}"));
        let patch = patch.cloned().map(Action::Patch);
        let images = self.fixtures.image_map();
        for action in patch.iter().chain(&case.sabotage.actions) {
            match steps::perform(jig, &self.applier, images, mode, action, defer).await {
                Ok(done) => evidence.push(format!("sabotage: {done}")),
                Err(message) => return error(format!("sabotage: {message}")),
            }
        }
        phase(format!(
            "sabotage settling: {}",
            waiting_for(&case.sabotage.settle)
        ));
        let settle = self.wait_all(jig, &case.sabotage.settle, self.deadlines.ready);
        if let Err(message) = settle.await {
            return error(format!("sabotage did not settle: {message}"));
        }
        Ok(())
    }

    /// What a run that runs alone shares with the others, made ready before
    /// it takes the cluster (MetalLB installed, its images on the nodes):
    /// measured, the first LoadBalancer case's MetalLB install held every
    /// other case of the cluster for 65 s. Both are made once and kept, so
    /// `set_up` finds them; a failure here is left for it to report.
    async fn prepare_shared(&self, case: &Case) {
        if case.needs.contains(&Addon::Metallb) {
            let _ = self.metallb().await;
        }
        if let (Some(nodes), Ok(objects)) = (&self.cluster.node_images, self.fixtures.objects(case))
        {
            let images: Vec<String> = objects.iter().flat_map(manifest::images).collect();
            let _ = nodes.ensure(&images, false).await;
        }
    }

    /// MetalLB on the cluster, installed by the first case that needs it.
    async fn metallb(&self) -> Result<Arc<crate::cluster::metallb::Metallb>, String> {
        let (project, images) = (self.fixtures.project(), self.fixtures.image_map());
        self.metallb
            .get(&self.cluster, &self.applier, project, images)
            .await
    }

    /// What the case needs before its checks: MetalLB and its address
    /// pool, its images on the nodes, its objects applied and ready. `Ok`
    /// carries the moment its readiness waits began.
    async fn set_up(
        &self,
        jig: &Jig,
        case: &Case,
        objects: Vec<serde_json::Value>,
        phase: &(dyn Fn(String) + Sync),
        evidence: &mut Vec<String>,
    ) -> Result<Instant, CaseOutcome> {
        let error = |message: String| CaseOutcome::Error { message };
        if case.needs.contains(&Addon::Metallb) {
            phase("waiting for MetalLB".into());
            let lb = match self.metallb().await {
                Ok(lb) => lb,
                Err(e) => return Err(error(format!("{}: {e}", Addon::Metallb))),
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
                    Err(e) => {
                        return Err(error(format!("address pool: {}", cluster_error_chain(&e))))
                    }
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
                Err(e) => return Err(error(e)),
            }
        }
        let objects = rendered(jig, &objects);
        phase(format!("applying {} objects", objects.len()));
        for object in &objects {
            if let Err(e) = self.applier.apply(&jig.namespace, object).await {
                return Err(error(format!("apply: {}", cluster_error_chain(&e))));
            }
        }
        let mut ready: Vec<Readiness> = Vec::new();
        if case.client_pods() == ClientPods::Own {
            ready.push(Readiness::DaemonSet(CLIENTS_DAEMONSET.into()));
        }
        ready.extend(case.ready.iter().cloned());
        let waited = Instant::now();
        phase(waiting_for(&ready));
        // Many pods take longer than the deadline allows a few: a kubelet of
        // this 2-core host once had 53 of the sharding case's 120 ready after
        // 120 s. The deadline grows with the pods, never below its default.
        let pods = crate::needs::pods_of(&objects, false) as f64;
        let deadline = self
            .deadlines
            .ready
            .max(crate::model::scaled(Duration::from_secs_f64(
                pods * SECONDS_PER_POD,
            )));
        if let Err(message) = self.wait_all(jig, &ready, deadline).await {
            return Err(error(message));
        }
        Ok(waited)
    }

    /// kube-proxy programs rules after the EndpointSlices change, so the
    /// first attempt may see the old state: the checks are repeated until
    /// they pass (`want_pass`) or fail (not `want_pass`), or the propagation
    /// deadline passes; the attempt that starts after the deadline is the
    /// last. The verdict and evidence are those of the last attempt.
    async fn checks_until(
        &self,
        jig: &Jig,
        checks: &[crate::model::Check],
        want_pass: bool,
        evidence: &mut Vec<String>,
    ) -> CaseOutcome {
        let nodes = self.size().nodes;
        let checks: Vec<_> = checks
            .iter()
            .flat_map(|c| template::each_node(c, nodes))
            .collect();
        let checks = &checks[..];
        let started = Instant::now();
        let mut attempt = 0;
        let mut first_miss = None;
        // The placement miss of the attempts before, and since when.
        let mut no_client: Option<(String, Instant)> = None;
        loop {
            attempt += 1;
            let last = started.elapsed() >= self.deadlines.propagation;
            let mut attempt_evidence = Vec::new();
            // The first mismatch settles an attempt that looks for a
            // failure, and dooms one that will be retried: the checks after
            // it could only cost time (a blackholed request costs its
            // timeout). A pass still needs every check of one attempt, and
            // the last attempt runs them all, so a failure lists each miss.
            let stop_at_failure = !want_pass || !last;
            let (outcome, miss) = self
                .run_checks(jig, checks, stop_at_failure, &mut attempt_evidence)
                .await;
            let settled = match &outcome {
                CaseOutcome::Passed => want_pass,
                CaseOutcome::Failed { .. } => !want_pass,
                _ => false,
            };
            // kube-proxy catching up cannot heal a placement miss, only the
            // pods moving: one that stays the same ends the retries early.
            let placed = match (miss, &no_client) {
                (Some(m), Some((before, since))) if m == *before => {
                    since.elapsed() >= scaled(PLACEMENT_SETTLE)
                }
                (miss, _) => {
                    no_client = miss.map(|m| (m, Instant::now()));
                    false
                }
            };
            if placed {
                attempt_evidence.push(format!(
                    "the client placement missed the same way for {}s: the pods it chooses among do not move",
                    scaled(PLACEMENT_SETTLE).as_secs()
                ));
            }
            if settled || last || placed {
                if attempt > 1 {
                    let first = first_miss.map(|m| format!(" (attempt 1: {m})"));
                    evidence.push(format!(
                        "verdict of attempt {attempt}, {:.1}s after the first{}",
                        started.elapsed().as_secs_f64(),
                        first.unwrap_or_default()
                    ));
                }
                evidence.extend(attempt_evidence);
                return outcome;
            }
            if attempt == 1 {
                first_miss = outcome.message().map(str::to_string);
            }
            tokio::time::sleep(RETRY_INTERVAL).await;
        }
    }

    /// Every check once: the first mismatch is the failure message, an
    /// error (no observation) is an error; with it, the placement miss that
    /// ended the attempt, if one did.
    async fn run_checks(
        &self,
        jig: &Jig,
        checks: &[crate::model::Check],
        stop_at_failure: bool,
        evidence: &mut Vec<String>,
    ) -> (CaseOutcome, Option<String>) {
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
                Err(e) => {
                    let message = format!("{}: {e}", check.name);
                    let miss = matches!(e, CheckError::NoClient(_)).then(|| message.clone());
                    return (CaseOutcome::Error { message }, miss);
                }
            }
        }
        let outcome = match failures.first() {
            None => CaseOutcome::Passed,
            Some(first) => {
                if failures.len() > 1 {
                    evidence.push(format!("all mismatches:\n  {}", failures.join("\n  ")));
                }
                CaseOutcome::Failed {
                    message: first.clone(),
                }
            }
        };
        (outcome, None)
    }

    /// All waits at once (they watch different objects), each within
    /// `deadline`; the first failure names what did not happen.
    async fn wait_all(
        &self,
        jig: &Jig,
        ready: &[Readiness],
        deadline: Duration,
    ) -> Result<(), String> {
        let results = join_all(ready.iter().map(|r| self.wait_one(jig, r, deadline))).await;
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
    ) -> Result<String, String> {
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
                Ok(state) => return Ok(state),
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

/// The case's fixture objects as they go into `jig`'s namespace and family:
/// fixtures may name their namespace (`mysql.${namespace}.svc.cluster.local.`).
fn rendered(jig: &Jig, objects: &[serde_json::Value]) -> Vec<serde_json::Value> {
    template::render_objects(objects, |templates| {
        crate::resolve::known_vars(jig, templates)
    })
    .iter()
    .map(|o| jig.manifest(o))
    .collect()
}

/// The pods `case`'s fixtures start on a cluster whose EndpointSlices hold
/// at most `max_endpoints_per_slice` endpoints (replicas may be shares of
/// it); 0 when they do not load (the run then errors with the reason).
pub(crate) fn pods_started(case: &Case, fixtures: &Fixtures, max_endpoints_per_slice: u32) -> u64 {
    fixtures.objects(case).map_or(0, |objects| {
        crate::needs::pods_of(&template::sized(&objects, max_endpoints_per_slice), false)
    })
}

/// Whether a run starting `pods` pods runs alone (see [`MANY_PODS`]).
pub(crate) fn crowded(pods: u64) -> bool {
    pods > MANY_PODS
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
}

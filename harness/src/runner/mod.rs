//! The runner: brings up a cluster per mode, runs every case in its own
//! namespace (concurrently within a mode), and emits [`Event`]s. It never
//! formats output; reporters consume the events.

mod case;
mod check;
mod clients;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{mpsc, watch, Mutex, OnceCell};

pub use crate::cluster::clusters::{ClusterError, Clusters, Provider};
pub use crate::model::Deadlines;
pub use case::{CaseRunner, PhaseSink};

use crate::cluster::{self, metallb::MetallbSource};
use crate::fixture::{Fixtures, PROBE_IMAGE};
use crate::kube::namespace;
use crate::model::{
    Case, CaseKey, CaseResult, Event, IpFamily, ProxyMode, Variant, DEFAULT_MAX_ENDPOINTS_PER_SLICE,
};

/// How often reporters hear [`Event::Tick`] while cases run.
const TICK: Duration = Duration::from_secs(5);

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

/// `error: cause: cause`, one line.
pub fn cluster_error_chain(err: &dyn std::error::Error) -> String {
    crate::cluster::error_chain(err)
}

/// A rough first-use cost, in seconds, of each image a case brings beyond
/// the probe's: loaded into kind's nodes (or pulled) when the case starts.
/// WordPress and MySQL together took 58 s on this project's machine.
const IMAGE_SECONDS: f64 = 30.0;

/// `runs` in the order a mode starts them: the runs that must run alone
/// first, on a quiet cluster (among the others each would wait for the
/// running ones and idle the slots; last, it met every finished case's
/// namespace still terminating, and 116 of the sharding case's 120 pods
/// did not start within 120 s), then the longest first, by
/// [`Case::expected_seconds`] and the images the case brings beyond the
/// probe's, so the long ones overlap the many short ones instead of
/// trailing them. Ties keep the given order.
pub fn start_order<'a>(
    runs: impl IntoIterator<Item = (&'a Case, Variant)>,
    fixtures: &Fixtures,
) -> Vec<(&'a Case, Variant)> {
    let probe = fixtures.image_map().resolve(PROBE_IMAGE).to_string();
    let mut keyed: Vec<(bool, f64, (&Case, Variant))> = runs
        .into_iter()
        .map(|(case, variant)| {
            // A fixture that does not load errors the case when it runs.
            let images = fixtures
                .images([case])
                .map_or(0, |all| all.iter().filter(|i| **i != probe).count());
            let cost = case.expected_seconds() + IMAGE_SECONDS * images as f64;
            // Many pods run alone too, on a cluster at the default
            // EndpointSlice size (the cluster's own is read when it runs).
            let pods = case::pods_started(case, fixtures, DEFAULT_MAX_ENDPOINTS_PER_SLICE);
            let alone = case.runs_alone(variant) || case::crowded(pods);
            (alone, cost, (case, variant))
        })
        .collect();
    keyed.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    keyed.into_iter().map(|(_, _, run)| run).collect()
}

/// What one `svcconf run` does.
#[derive(Clone)]
pub struct RunPlan {
    pub modes: Vec<ProxyMode>,
    /// The IP families every case runs in, per mode (IPv4 alone: result
    /// names carry no family).
    pub families: Vec<IpFamily>,
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
            for family in self.named_families() {
                for case in &self.cases {
                    for variant in &self.variants {
                        keys.push(CaseKey {
                            mode: *mode,
                            family,
                            suite: case.suite.clone(),
                            case: case.name.clone(),
                            variant: *variant,
                        });
                    }
                }
            }
        }
        keys
    }

    /// The families as result names carry them: `[None]` for an IPv4-only
    /// run (names as they always were), else each family by name.
    pub fn named_families(&self) -> Vec<Option<IpFamily>> {
        named_families(&self.families)
    }
}

/// See [`RunPlan::named_families`].
pub fn named_families(families: &[IpFamily]) -> Vec<Option<IpFamily>> {
    if families.is_empty() || families == [IpFamily::Ipv4] {
        vec![None]
    } else {
        families.iter().copied().map(Some).collect()
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

/// One run, whoever drives it (the CLI's run loop, `cargo test --features
/// kind`'s trials, the bench): a cluster per mode brought up on first use,
/// cases run on it with their events sent, and at the end what cut-short
/// cases left undone undone, the shared client pods gone and the clusters
/// torn down. Every event goes to the one channel it was made with.
pub struct Session {
    clusters: Clusters,
    fixtures: Arc<Fixtures>,
    deadlines: Deadlines,
    metallb: MetallbSource,
    run_id: String,
    /// Taken by `finish`, so the reporters' task ends once the runners' phase
    /// sinks are gone too.
    events: std::sync::Mutex<Option<mpsc::UnboundedSender<Event>>>,
    runners: Mutex<BTreeMap<ProxyMode, Arc<ModeRunner>>>,
}

/// A mode's runner once its cluster is up, or why it could not come up.
type ModeRunner = OnceCell<Result<Arc<CaseRunner>, String>>;

impl Session {
    pub fn new(
        clusters: Clusters,
        fixtures: Arc<Fixtures>,
        deadlines: Deadlines,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        Session {
            clusters,
            fixtures,
            deadlines,
            metallb: MetallbSource::default(),
            run_id: namespace::random_suffix(),
            events: std::sync::Mutex::new(Some(events)),
            runners: Mutex::default(),
        }
    }

    /// `--metallb-manifest`, `--lb-addresses`.
    pub fn with_metallb(mut self, metallb: MetallbSource) -> Self {
        self.metallb = metallb;
        self
    }

    pub fn provider(&self) -> &Provider {
        self.clusters.provider()
    }

    pub fn fixtures(&self) -> &Fixtures {
        &self.fixtures
    }

    /// The `svcconf.io/run` label of every namespace the run makes.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Sends `event` to the reporters (nothing after `finish`).
    pub fn send(&self, event: Event) {
        if let Some(tx) = self.events.lock().unwrap().as_ref() {
            let _ = tx.send(event);
        }
    }

    fn sender(&self) -> Option<mpsc::UnboundedSender<Event>> {
        self.events.lock().unwrap().clone()
    }

    /// The runner of `mode`'s cluster, brought up on the first call (its
    /// progress, then `ClusterReady` or `ClusterFailed`, go out as events);
    /// a cluster that could not come up stays an error for the run.
    pub async fn runner(&self, mode: ProxyMode) -> Result<Arc<CaseRunner>, String> {
        let cell = self.runners.lock().await.entry(mode).or_default().clone();
        cell.get_or_init(|| async {
            let started = Instant::now();
            let progress = |message: String| {
                self.send(Event::Progress {
                    mode: Some(mode),
                    message,
                })
            };
            let cluster = match self.clusters.bring_up(mode, &progress).await {
                Ok(c) => c,
                Err(e) => {
                    let reason = cluster_error_chain(&e);
                    self.send(Event::ClusterFailed {
                        mode,
                        reason: reason.clone(),
                    });
                    return Err(format!("no {mode} cluster: {reason}"));
                }
            };
            self.send(Event::ClusterReady {
                cluster: cluster.info.clone(),
                seconds: started.elapsed().as_secs_f64(),
            });
            let phases = self.sender();
            let runner = CaseRunner::new(
                cluster,
                self.fixtures.clone(),
                self.run_id.clone(),
                self.deadlines.clone(),
            )
            .with_metallb(self.metallb.clone())
            .with_phases(Arc::new(move |key: &CaseKey, phase: String| {
                if let Some(tx) = &phases {
                    let _ = tx.send(Event::CasePhase {
                        key: key.clone(),
                        phase,
                    });
                }
            }));
            Ok(Arc::new(runner))
        })
        .await
        .clone()
    }

    /// One run of `case` on `runner`, between `CaseStarted` and
    /// `CaseFinished`.
    pub async fn run_case(
        &self,
        runner: &CaseRunner,
        case: &Case,
        variant: Variant,
        family: Option<IpFamily>,
    ) -> CaseResult {
        self.send(Event::CaseStarted {
            key: CaseKey {
                mode: runner.cluster.info.mode,
                family,
                suite: case.suite.clone(),
                case: case.name.clone(),
                variant,
            },
        });
        let result = runner.run(case, variant, family).await;
        self.send(Event::CaseFinished {
            result: result.clone(),
        });
        result
    }

    /// The end of `mode`'s cases: its shared client pods go.
    pub async fn end_mode(&self, mode: ProxyMode) {
        let cell = self.runners.lock().await.get(&mode).cloned();
        if let Some(Ok(runner)) = cell.as_ref().and_then(|c| c.get()) {
            if let Some(message) = runner.finish().await {
                self.send(Event::Progress {
                    mode: Some(mode),
                    message,
                });
            }
        }
    }

    /// The end of the run: an interrupted run first undoes what its
    /// unfinished cases did; then every mode ends, the run's namespaces go,
    /// and the kind clusters it created (unless `keep`; with `logs`, their
    /// logs exported there first); `RunFinished` is the last event.
    pub async fn finish(
        &self,
        keep: bool,
        logs: Option<&Path>,
        interrupted: bool,
        started: Instant,
    ) {
        let runners: Vec<Arc<CaseRunner>> = std::mem::take(&mut *self.runners.lock().await)
            .into_values()
            .filter_map(|cell| cell.get().and_then(|r| r.as_ref().ok()).cloned())
            .collect();
        for runner in &runners {
            let mode = Some(runner.cluster.info.mode);
            if interrupted {
                for line in runner.undo_unfinished().await {
                    self.send(Event::Progress {
                        mode,
                        message: format!("undid {line}"),
                    });
                }
            }
            if let Some(message) = runner.finish().await {
                self.send(Event::Progress { mode, message });
            }
        }
        drop(runners);
        for message in self.clusters.tear_down(&self.run_id, keep, logs).await {
            self.send(Event::Progress {
                mode: None,
                message,
            });
        }
        self.send(Event::RunFinished {
            seconds: started.elapsed().as_secs_f64(),
            interrupted,
        });
        self.events.lock().unwrap().take();
    }
}

/// Runs `plan`, mode after mode (one cluster at a time on a small machine),
/// sending events to `events`. Setting `cancel` to true (Ctrl-C) stops the
/// work; cleanup still runs and `RunFinished` still goes out.
pub async fn run(
    plan: &RunPlan,
    clusters: Clusters,
    fixtures: Arc<Fixtures>,
    deadlines: &Deadlines,
    events: mpsc::UnboundedSender<Event>,
    mut cancel: watch::Receiver<bool>,
) -> RunStatus {
    let started = Instant::now();
    let session = Session::new(clusters, fixtures, deadlines.clone(), events)
        .with_metallb(plan.metallb.clone());
    session.send(Event::RunStarted {
        planned: plan.keys(),
    });
    let failed = AtomicBool::new(false);
    let infra = AtomicBool::new(false);
    let work = async {
        for &mode in &plan.modes {
            if let Some(reason) = cluster::mode_unavailable(mode)
                .filter(|_| matches!(session.provider(), Provider::Kind { .. }))
            {
                session.send(Event::ModeUnavailable { mode, reason });
                continue;
            }
            let Ok(runner) = session.runner(mode).await else {
                infra.store(true, Ordering::Relaxed);
                continue;
            };
            let runs = plan
                .cases
                .iter()
                .flat_map(|c| plan.variants.iter().map(move |v| (c, *v)));
            let runs = start_order(runs, session.fixtures());
            // Family after family, each in the start order.
            let runs = plan
                .named_families()
                .into_iter()
                .flat_map(|f| runs.iter().map(move |(c, v)| (*c, *v, f)))
                .collect::<Vec<_>>();
            let mut results =
                futures::stream::iter(runs.into_iter().map(|(case, variant, family)| {
                    session.run_case(&runner, case, variant, family)
                }))
                .buffer_unordered(plan.concurrency.max(1));
            while let Some(result) = results.next().await {
                if !result.outcome.is_success() {
                    failed.store(true, Ordering::Relaxed);
                }
            }
            drop(results);
            session.end_mode(mode).await;
        }
    };
    let ticks = async {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            session.send(Event::Tick);
        }
    };
    let interrupted = tokio::select! {
        _ = work => false,
        _ = cancel.wait_for(|c| *c) => true,
        _ = ticks => unreachable!("ticks never end"),
    };
    if interrupted {
        session.send(Event::Progress {
            mode: None,
            message: "interrupted: cleaning up".into(),
        });
    }
    let broken = interrupted || infra.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed);
    let logs = plan.logs_dir.as_deref().filter(|_| broken);
    session
        .finish(plan.keep_clusters, logs, interrupted, started)
        .await;
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
    use crate::catalog::Project;
    use crate::kube::manifest::ImageMap;

    #[test]
    fn ipv4_alone_names_no_family() {
        assert_eq!(named_families(&[IpFamily::Ipv4]), vec![None]);
        assert_eq!(
            named_families(&[IpFamily::Ipv4, IpFamily::Ipv6]),
            vec![Some(IpFamily::Ipv4), Some(IpFamily::Ipv6)]
        );
        let key = CaseKey {
            mode: ProxyMode::Nftables,
            family: Some(IpFamily::Ipv6),
            suite: "routing".into(),
            case: "clusterip-basic".into(),
            variant: Variant::Sabotaged,
        };
        assert_eq!(
            key.to_string(),
            "nftables::ipv6::routing::clusterip-basic::sabotaged"
        );
        assert_eq!(key.scope(), "nftables.ipv6");
    }

    #[test]
    fn lone_runs_start_first_then_the_long_cases() {
        let project = Project::built_in();
        let catalog = project.load_catalog().unwrap();
        let fixtures = Fixtures::new(project, ImageMap::default());
        let runs = catalog
            .cases()
            .iter()
            .flat_map(|c| [Variant::Plain, Variant::Sabotaged].map(|v| (c, v)));
        let order: Vec<(String, Variant)> = start_order(runs, &fixtures)
            .into_iter()
            .map(|(c, v)| (c.name.clone(), v))
            .collect();
        assert_eq!(order.len(), 2 * catalog.cases().len());
        let at = |name: &str, v: Variant| {
            order
                .iter()
                .position(|(n, w)| n == name && *w == v)
                .unwrap()
        };
        // After the lone runs: WordPress and MySQL, whose images load on
        // first use; the 18 s expiry check.
        assert_eq!(order[9], ("wordpress-mysql".into(), Variant::Plain));
        assert!(at("affinity-timeout", Variant::Plain) < at("clusterip-basic", Variant::Plain));
        assert!(at("clusterip-basic", Variant::Plain) < at("clusterip-basic", Variant::Sabotaged));
        let alone = [
            ("mode-switch", Variant::Plain),
            ("endpointslice-sharding", Variant::Sabotaged),
            ("lb-reachable", Variant::Sabotaged),
            ("draining-node", Variant::Plain),
            ("draining-node", Variant::Sabotaged),
            ("external-ips-disallowed", Variant::Plain),
            ("external-ips-disallowed", Variant::Sabotaged),
        ];
        for (name, v) in alone {
            assert!(at(name, v) < 9, "{name} {v:?} runs alone: first");
        }
        assert!(at("lb-reachable", Variant::Plain) >= 9);
    }
}

//! `cargo test --features kind`: every case × proxy mode × variant as a
//! trial on kind clusters, one cluster per mode per run (created on first
//! use, shared, deleted at the end unless kept), `cargo test` filters
//! honoured, and the same JUnit the CLI writes.
//!
//! Trial names are `<mode>::<suite>::<case>` and
//! `<mode>::<suite>::<case>::sabotaged` (the case with its sabotage applied:
//! it passes only if the case then fails). A mode the host cannot run (ipvs
//! without IP_VS) is reported as ignored, with the reason.
//!
//! Environment: `SVCCONF_PROXY_MODES` (default `iptables,nftables,ipvs`),
//! `SVCCONF_KEEP_CLUSTER=1`, `SVCCONF_JUNIT` (default
//! `target/svcconf-junit.xml`), `SVCCONF_PROBE_IMAGE`, `SVCCONF_NODE_IMAGE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use svcconf_harness::cluster::{self, Kit};
use svcconf_harness::model::{Case, CaseKey, CaseOutcome, CaseResult, Event, ProxyMode, Variant};
use svcconf_harness::report::{table, RecordedRun, ReportError, ReportFiles, Reporter, RunRecord};
use svcconf_harness::runner::{self, Clusters, Deadlines, Session};
use tokio::sync::{mpsc, OnceCell};

/// What every trial shares.
struct Shared {
    runtime: tokio::runtime::Runtime,
    /// Set up on first use: docker, kind, images, the run's session. An
    /// error fails every trial.
    setup: OnceCell<Result<Arc<Session>, String>>,
    /// Where events go before there is a session (and its sender's clone).
    events: mpsc::UnboundedSender<Event>,
    /// The reporters' task; taken once the reports are written, so an
    /// interrupt racing the end writes them once.
    reporting: Mutex<Option<RecordedRun>>,
    junit: PathBuf,
    keep: bool,
}

/// Progress lines on stderr, as the trials' output.
struct ProgressLines;

impl Reporter for ProgressLines {
    fn on_event(&mut self, event: &Event, _: &RunRecord) -> Result<(), ReportError> {
        match event {
            Event::Progress {
                mode: Some(mode),
                message,
            } => eprintln!("[{mode}] {message}"),
            Event::Progress {
                mode: None,
                message,
            } => eprintln!("{message}"),
            Event::ClusterReady { cluster, seconds } => eprintln!(
                "[{}] cluster {} ready in {seconds:.0}s",
                cluster.mode, cluster.name
            ),
            _ => {}
        }
        Ok(())
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Shared {
    fn event(&self, e: Event) {
        let _ = self.events.send(e);
    }

    async fn session(&self) -> Result<Arc<Session>, String> {
        self.setup
            .get_or_init(|| async {
                let fail = |e: &dyn std::error::Error| cluster::error_chain(e);
                let project = svcconf_suites::project().map_err(|e| fail(&e))?;
                let kit = Kit::load().map_err(|e| fail(&e))?;
                let fixtures = Arc::new(svcconf_suites::fixtures(&project, kit.as_ref()));
                let docker = cluster::docker_available().await.map_err(|e| fail(&e))?;
                for warning in cluster::kind_host_warnings() {
                    eprintln!("svcconf: warning: {warning}");
                }
                let provider =
                    svcconf_suites::kind_provider(&project, kit.as_ref(), &fixtures, &docker)
                        .await?;
                let clusters = Clusters::new(provider, Deadlines::default());
                Ok(Arc::new(Session::new(
                    clusters,
                    fixtures,
                    Deadlines::default(),
                    self.events.clone(),
                )))
            })
            .await
            .clone()
    }

    async fn trial(&self, key: &CaseKey, case: &Case) -> Result<(), Failed> {
        let session = self.session().await.map_err(Failed::from)?;
        let runner = session.runner(key.mode).await.map_err(Failed::from)?;
        let result = session
            .run_case(&runner, case, key.variant, key.family)
            .await;
        match result.outcome {
            CaseOutcome::Passed | CaseOutcome::Skipped { .. } => Ok(()),
            CaseOutcome::Failed { message } | CaseOutcome::Error { message } => {
                Err(Failed::from(format!("{message}\n{}", result.evidence)))
            }
        }
    }

    /// Undoes what cut-short trials did, deletes what the run made (after
    /// exporting the clusters' logs when a trial failed) and writes the
    /// reports.
    fn finish(&self, started: Instant, interrupted: bool, failed: bool) {
        let Some(reporting) = self.reporting.lock().unwrap().take() else {
            return;
        };
        let logs_dir = self.junit.with_file_name("svcconf-logs");
        let logs = (failed || interrupted).then_some(logs_dir.as_path());
        match self.setup.get() {
            Some(Ok(session)) => {
                self.runtime
                    .block_on(session.finish(self.keep, logs, interrupted, started));
            }
            _ => self.event(Event::RunFinished {
                seconds: started.elapsed().as_secs_f64(),
                interrupted,
            }),
        }
        let (record, errors) = self.runtime.block_on(reporting).expect("reporter task");
        for e in errors {
            eprintln!("svcconf: {}", cluster::error_chain(&e));
        }
        if !record.planned.is_empty() {
            eprintln!("{}JUnit: {}", table(&record), self.junit.display());
        }
    }
}

fn modes() -> Vec<ProxyMode> {
    match std::env::var("SVCCONF_PROXY_MODES") {
        Ok(list) => ProxyMode::parse_list(&list).unwrap_or_else(|e| {
            eprintln!("SVCCONF_PROXY_MODES: {e}");
            std::process::exit(2)
        }),
        Err(_) => ProxyMode::ALL.to_vec(),
    }
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    // Trials wait on the cluster, not the CPU: run several at once.
    if args.test_threads.is_none() {
        args.test_threads = Some(6);
    }
    let catalog = match svcconf_suites::catalog() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("svcconf: {}", cluster::error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let cases: Arc<Vec<Case>> = Arc::new(catalog.cases().to_vec());
    let modes = modes();
    let (cluster_families, families) = match svcconf_suites::ip_family() {
        Ok(f) => (f.families(), runner::named_families(&f.families())),
        Err(e) => {
            eprintln!("svcconf: {e}");
            return ExitCode::from(2);
        }
    };
    let junit = std::env::var_os("SVCCONF_JUNIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/svcconf-junit.xml"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (events, reporting) = {
        let _entered = runtime.enter();
        ReportFiles {
            junit: junit.clone(),
            json: Some(junit.with_extension("json")),
        }
        .spawn(Some(Box::new(ProgressLines)))
    };
    let shared = Arc::new(Shared {
        runtime,
        setup: OnceCell::new(),
        events,
        reporting: Mutex::new(Some(reporting)),
        junit,
        keep: std::env::var("SVCCONF_KEEP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0"),
    });

    // Trials start in the runner's order (the long ones first); the
    // reports list them in the catalog's.
    let start = {
        let fixtures = svcconf_suites::fixtures(&svcconf_suites::project().expect("loaded"), None);
        let runs = cases
            .iter()
            .flat_map(|c| [Variant::Plain, Variant::Sabotaged].map(|v| (c, v)));
        let order = runner::start_order(runs, &fixtures);
        let rank: BTreeMap<(&str, Variant), usize> = order
            .iter()
            .enumerate()
            .map(|(i, (case, variant))| ((case.name.as_str(), *variant), i))
            .collect();
        move |key: &CaseKey| (key.family, rank[&(key.case.as_str(), key.variant)])
    };
    let mut trials = Vec::new();
    let mut planned = Vec::new();
    // Planned trials that end before any cluster, as skipped: the reports
    // list them with their reason.
    let mut skipped = Vec::new();
    for (m, &mode) in modes.iter().enumerate() {
        let unavailable = cluster::mode_unavailable(mode);
        for (case, &family) in cases
            .iter()
            .flat_map(|c| families.iter().map(move |f| (c, f)))
        {
            for variant in [Variant::Plain, Variant::Sabotaged] {
                let key = CaseKey {
                    mode,
                    family,
                    suite: case.suite.clone(),
                    case: case.name.clone(),
                    variant,
                };
                // Known before any cluster: the mode this host cannot run,
                // the dual-stack case on single-family clusters.
                let single_stack = case.single_stack_reason(&cluster_families);
                let not_here = unavailable.clone().or_else(|| single_stack.clone());
                let trial = match &not_here {
                    Some(reason) => {
                        let reason = reason.clone();
                        Trial::ignorable_test(key.to_string(), move || {
                            Ok(Completion::ignored_with(reason))
                        })
                    }
                    None => {
                        let (shared, case, key) = (shared.clone(), case.clone(), key.clone());
                        Trial::test(key.to_string(), move || {
                            shared.runtime.block_on(shared.trial(&key, &case))
                        })
                    }
                };
                if !args.is_filtered_out(&trial) && !args.is_ignored(&trial) {
                    planned.push(key.clone());
                    if let (None, Some(reason)) = (&unavailable, single_stack) {
                        skipped.push((key.clone(), reason));
                    }
                }
                trials.push((m, start(&key), trial));
            }
        }
    }
    trials.sort_by_key(|(m, rank, _)| (*m, *rank));
    let trials: Vec<Trial> = trials.into_iter().map(|(_, _, trial)| trial).collect();
    if args.list {
        return libtest_mimic::run(&args, trials).exit_code();
    }
    shared.event(Event::RunStarted {
        planned: planned.clone(),
    });
    for mode in &modes {
        if let Some(reason) = cluster::mode_unavailable(*mode) {
            if planned.iter().any(|k| k.mode == *mode) {
                eprintln!("[{mode}] SKIPPED: {reason}");
                shared.event(Event::ModeUnavailable {
                    mode: *mode,
                    reason,
                });
            }
        }
    }
    for (key, reason) in skipped {
        shared.event(Event::CaseFinished {
            result: CaseResult::skipped(key, reason),
        });
    }
    let started = Instant::now();
    {
        // Ctrl-C or SIGTERM: clean up, still write the JUnit (unfinished
        // trials as errors).
        let shared = shared.clone();
        std::thread::spawn(move || {
            let signal = shared.runtime.block_on(runner::shutdown_signal());
            eprintln!("\n{signal}: deleting what this run created");
            shared.finish(started, true, true);
            std::process::exit(130);
        });
    }
    let conclusion = libtest_mimic::run(&args, trials);
    shared.finish(started, false, conclusion.has_failed());
    conclusion.exit_code()
}

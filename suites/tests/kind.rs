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
use svcconf_harness::fixture::Fixtures;
use svcconf_harness::kube::namespace::random_suffix;
use svcconf_harness::model::{Case, CaseKey, CaseOutcome, Event, ProxyMode, Variant};
use svcconf_harness::report::{table, JsonReporter, JunitReporter, Reporter, Reporters};
use svcconf_harness::runner::{self, CaseRunner, Clusters, Deadlines};
use tokio::sync::OnceCell;

/// What every trial shares.
struct Shared {
    runtime: tokio::runtime::Runtime,
    /// Set up on first use: docker, kind, images. An error fails every trial.
    setup: OnceCell<Result<Arc<Setup>, String>>,
    runners: BTreeMap<ProxyMode, OnceCell<Result<Arc<CaseRunner>, String>>>,
    /// Fed live, so per-mode timings are real; taken (`None`) once the
    /// reports are written, so an interrupt racing the end writes them once.
    reporters: Mutex<Option<Reporters>>,
    junit: PathBuf,
    run_id: String,
    keep: bool,
}

struct Setup {
    clusters: Clusters,
    fixtures: Arc<Fixtures>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Shared {
    fn event(&self, e: Event) {
        if let Some(r) = self.reporters.lock().unwrap().as_mut() {
            r.handle(&e);
        }
    }

    async fn setup(&self) -> Result<Arc<Setup>, String> {
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
                Ok(Arc::new(Setup {
                    clusters: Clusters::new(provider, Deadlines::default()),
                    fixtures,
                }))
            })
            .await
            .clone()
    }

    async fn runner(&self, mode: ProxyMode) -> Result<Arc<CaseRunner>, String> {
        let setup = self.setup().await?;
        self.runners[&mode]
            .get_or_init(|| async {
                let started = Instant::now();
                let progress = |line: String| eprintln!("[{mode}] {line}");
                match setup.clusters.bring_up(mode, &progress).await {
                    Ok(cluster) => {
                        let seconds = started.elapsed().as_secs_f64();
                        eprintln!(
                            "[{mode}] cluster {} ready in {seconds:.0}s",
                            cluster.info.name
                        );
                        self.event(Event::ClusterReady {
                            cluster: cluster.info.clone(),
                            seconds,
                        });
                        Ok(Arc::new(CaseRunner::new(
                            cluster,
                            setup.fixtures.clone(),
                            self.run_id.clone(),
                            Deadlines::default(),
                        )))
                    }
                    Err(e) => {
                        let reason = cluster::error_chain(&e);
                        self.event(Event::ClusterFailed {
                            mode,
                            reason: reason.clone(),
                        });
                        Err(format!("no {mode} cluster: {reason}"))
                    }
                }
            })
            .await
            .clone()
    }

    async fn trial(&self, key: &CaseKey, case: &Case) -> Result<(), Failed> {
        let runner = self.runner(key.mode).await.map_err(Failed::from)?;
        self.event(Event::CaseStarted { key: key.clone() });
        let result = runner.run(case, key.variant).await;
        let outcome = result.outcome.clone();
        let evidence = result.evidence.clone();
        self.event(Event::CaseFinished { result });
        match outcome {
            CaseOutcome::Passed | CaseOutcome::Skipped { .. } => Ok(()),
            CaseOutcome::Failed { message } | CaseOutcome::Error { message } => {
                Err(Failed::from(format!("{message}\n{evidence}")))
            }
        }
    }

    /// Deletes what the run made (after exporting the clusters' logs when
    /// a trial failed) and writes the reports.
    fn finish(&self, started: Instant, interrupted: bool, failed: bool) {
        let logs_dir = self.junit.with_file_name("svcconf-logs");
        let logs = (failed || interrupted).then_some(logs_dir.as_path());
        // Cases cut short leave their step side effects: undo them first.
        for runner in self.runners.values().filter_map(|r| r.get()?.as_ref().ok()) {
            for line in self.runtime.block_on(runner.undo_unfinished()) {
                eprintln!("undid {line}");
            }
        }
        if let Some(Ok(setup)) = self.setup.get() {
            for line in
                self.runtime
                    .block_on(setup.clusters.tear_down(&self.run_id, self.keep, logs))
            {
                eprintln!("{line}");
            }
        }
        self.event(Event::RunFinished {
            seconds: started.elapsed().as_secs_f64(),
            interrupted,
        });
        let Some(reporters) = self.reporters.lock().unwrap().take() else {
            return;
        };
        let junit = &self.junit;
        let (record, errors) = reporters.finish();
        for e in errors {
            eprintln!("svcconf: {}", cluster::error_chain(&e));
        }
        if !record.planned.is_empty() {
            eprintln!("{}JUnit: {}", table(&record), junit.display());
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
    let junit = std::env::var_os("SVCCONF_JUNIT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/svcconf-junit.xml"));
    let shared = Arc::new(Shared {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
        setup: OnceCell::new(),
        runners: modes.iter().map(|m| (*m, OnceCell::new())).collect(),
        reporters: Mutex::new(Some(Reporters::new(vec![
            Box::new(JunitReporter::new(junit.clone())) as Box<dyn Reporter>,
            Box::new(JsonReporter::new(junit.with_extension("json"))),
        ]))),
        junit,
        run_id: random_suffix(),
        keep: std::env::var("SVCCONF_KEEP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0"),
    });

    let mut trials = Vec::new();
    let mut planned = Vec::new();
    for &mode in &modes {
        let unavailable = cluster::mode_unavailable(mode);
        for case in cases.iter() {
            for variant in [Variant::Plain, Variant::Sabotaged] {
                let key = CaseKey {
                    mode,
                    suite: case.suite.clone(),
                    case: case.name.clone(),
                    variant,
                };
                let trial = match &unavailable {
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
                    planned.push(key);
                }
                trials.push(trial);
            }
        }
    }
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

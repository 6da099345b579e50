//! `cargo bench --features kind --bench suite_wall`: the suite's wall time
//! per proxy mode on a warm cluster. Every plain case runs at once (bounded
//! like `svcconf run --concurrency`), several times, on the kind cluster
//! `svcconf-<mode>` (created once if missing, then kept for the next run),
//! or on the cluster `SVCCONF_BENCH_KUBECONFIG` points at. Cluster bring-up
//! is not timed; between runs the previous run's namespaces are waited out.
//!
//! The cases are timed in two groups, one after the other: the Service
//! suites (everything but `loadbalancer` and `apps`; the 60 s target is
//! theirs) and the LoadBalancer group (MetalLB and WordPress: reported, no
//! target). Prints per mode and group: min/median/max wall seconds, the
//! slowest cases, passed and failed counts; writes `target/svcconf-bench.json`.
//!
//! Environment: `SVCCONF_PROXY_MODES` (default `iptables,nftables`; with a
//! kubeconfig, the mode kube-proxy runs), `SVCCONF_BENCH_RUNS` (3),
//! `SVCCONF_BENCH_CONCURRENCY` (6, the CLI's default),
//! `SVCCONF_BENCH_KUBECONFIG`, `SVCCONF_BENCH_CONTEXT`, `SVCCONF_BENCH_JSON`,
//! `SVCCONF_BENCH_LB_ADDRESSES` (`A-B` or a CIDR for MetalLB, as
//! `--lb-addresses`; needed with a kubeconfig),
//! `SVCCONF_PROBE_IMAGE`, `SVCCONF_NODE_IMAGE`. Arguments that do not start
//! with `-` keep only the cases whose `suite/case` contains one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use svcconf_harness::cluster::metallb::{AddressRange, MetallbSource};
use svcconf_harness::cluster::{self, Kit, KubeconfigSource};
use svcconf_harness::kube::namespace;
use svcconf_harness::model::{Case, CaseOutcome, CaseResult, Event, ProxyMode, Variant};
use svcconf_harness::runner::{self, Clusters, Deadlines, Provider, Session};
use tokio::sync::{mpsc, Semaphore};

/// The CLI's `--concurrency` default.
const DEFAULT_CONCURRENCY: usize = 6;
const DEFAULT_RUNS: usize = 3;
/// The target for one mode's suite on this project's 2-core machine.
const TARGET_SECONDS: f64 = 60.0;
/// Slowest cases shown per mode.
const SLOWEST: usize = 5;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name}={v:?} is not a positive number")),
    }
}

/// One timed run of every selected case in one mode.
struct Round {
    wall: f64,
    results: Vec<CaseResult>,
}

fn case_id(r: &CaseResult) -> String {
    format!("{}/{}", r.key.suite, r.key.case)
}

/// min, median, max (`values` not empty).
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], median, v[v.len() - 1])
}

fn first_line(outcome: &CaseOutcome) -> String {
    match outcome {
        CaseOutcome::Failed { message } | CaseOutcome::Error { message } => {
            message.lines().next().unwrap_or_default().to_string()
        }
        CaseOutcome::Skipped { reason } => reason.clone(),
        CaseOutcome::Passed => String::new(),
    }
}

/// Prints one mode's summary and returns it as JSON.
/// The groups timed apart: `(name, cases, target)`.
fn groups(cases: Vec<Case>, filtered: bool) -> Vec<(&'static str, Vec<Case>, Option<f64>)> {
    if filtered {
        return vec![("selected", cases, None)];
    }
    let (lb, services): (Vec<Case>, Vec<Case>) = cases
        .into_iter()
        .partition(|c| c.suite == "loadbalancer" || c.suite == "apps");
    vec![
        ("services", services, Some(TARGET_SECONDS)),
        ("loadbalancer", lb, None),
    ]
}

fn summarize(
    mode: ProxyMode,
    group: &str,
    target: Option<f64>,
    cluster: &str,
    rounds: &[Round],
) -> serde_json::Value {
    let walls: Vec<f64> = rounds.iter().map(|r| r.wall).collect();
    let (min, median, max) = spread(&walls);
    let all = rounds.iter().flat_map(|r| r.results.iter());
    let passed = all.clone().filter(|r| r.outcome.is_success()).count();
    let failed = all.clone().count() - passed;
    let mut per_case: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in all.clone() {
        per_case.entry(case_id(r)).or_default().push(r.seconds);
    }
    let mut cases: Vec<(String, f64, f64)> = per_case
        .iter()
        .map(|(id, s)| {
            let (_, median, max) = spread(s);
            (id.clone(), median, max)
        })
        .collect();
    cases.sort_by(|a, b| b.1.total_cmp(&a.1));
    let verdict = match target {
        Some(t) if median <= t => format!(" (target: median ≤ {t:.0}s, met)"),
        Some(t) => format!(" (target: median ≤ {t:.0}s, missed)"),
        None => String::new(),
    };
    println!(
        "{mode} {group}: wall min {min:.1}s / median {median:.1}s / max {max:.1}s over {} runs\
         {verdict}; {passed} passed, {failed} failed",
        rounds.len()
    );
    println!("  slowest cases (median / max of runs):");
    for (id, median, max) in cases.iter().take(SLOWEST) {
        println!("    {id:46} {median:5.1}s / {max:5.1}s");
    }
    let failures: Vec<serde_json::Value> = rounds
        .iter()
        .enumerate()
        .flat_map(|(i, round)| {
            round
                .results
                .iter()
                .filter(|r| !r.outcome.is_success())
                .map(move |r| (i + 1, r))
        })
        .map(|(run, r)| {
            println!(
                "  run {run}: {} {}: {}",
                r.outcome.label(),
                case_id(r),
                first_line(&r.outcome)
            );
            json!({"run": run, "case": case_id(r), "outcome": r.outcome})
        })
        .collect();
    json!({
        "mode": mode,
        "group": group,
        "available": true,
        "cluster": cluster,
        "wallSeconds": walls,
        "min": min,
        "median": median,
        "max": max,
        "targetSeconds": target,
        "passed": passed,
        "failed": failed,
        "cases": cases.iter().map(|(id, median, max)| json!({
            "case": id,
            "seconds": per_case[id],
            "median": median,
            "max": max,
        })).collect::<Vec<_>>(),
        "failures": failures,
    })
}

/// Every case once, at most `concurrency` at a time; the wall clock runs
/// from the first start to the last result.
async fn round(session: &Session, mode: ProxyMode, cases: &[Case], concurrency: usize) -> Round {
    let runner = match session.runner(mode).await {
        Ok(r) => r,
        Err(e) => unreachable!("the cluster was up before the rounds: {e}"),
    };
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let order = runner::start_order(
        cases.iter().map(|c| (c, Variant::Plain)),
        session.fixtures(),
    );
    let runs = order.into_iter().map(|(case, variant)| {
        let (runner, permits) = (runner.clone(), permits.clone());
        async move {
            let _permit = permits.acquire_owned().await.expect("semaphore open");
            session.run_case(&runner, case, variant, None).await
        }
    });
    let results = futures::future::join_all(runs).await;
    let wall = started.elapsed().as_secs_f64();
    // Each round starts the run's client pods anew, as a run does.
    session.end_mode(mode).await;
    Round { wall, results }
}

struct Setup {
    session: Session,
    modes: Vec<ProxyMode>,
    kubeconfig: bool,
}

/// Progress lines on stderr, as the bench's output.
fn progress_lines() -> mpsc::UnboundedSender<Event> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let Event::Progress { mode, message } = event {
                match mode {
                    Some(mode) => eprintln!("[{mode}] {message}"),
                    None => eprintln!("{message}"),
                }
            }
        }
    });
    tx
}

async fn setup() -> Result<Setup, String> {
    let fail = |e: &dyn std::error::Error| cluster::error_chain(e);
    let project = svcconf_suites::project().map_err(|e| fail(&e))?;
    let kit = Kit::load().map_err(|e| fail(&e))?;
    let fixtures = Arc::new(svcconf_suites::fixtures(&project, kit.as_ref()));
    let metallb = MetallbSource {
        manifest: None,
        addresses: match std::env::var("SVCCONF_BENCH_LB_ADDRESSES") {
            Ok(v) => Some(
                v.parse::<AddressRange>()
                    .map_err(|e| format!("SVCCONF_BENCH_LB_ADDRESSES: {e}"))?,
            ),
            Err(_) => None,
        },
    };
    let listed = match std::env::var("SVCCONF_PROXY_MODES") {
        Ok(list) => {
            Some(ProxyMode::parse_list(&list).map_err(|e| format!("SVCCONF_PROXY_MODES: {e}"))?)
        }
        Err(_) => None,
    };
    if let Some(path) = std::env::var_os("SVCCONF_BENCH_KUBECONFIG") {
        let source = KubeconfigSource {
            path: Some(PathBuf::from(path)),
            context: std::env::var("SVCCONF_BENCH_CONTEXT").ok(),
        };
        let modes = match listed {
            Some(modes) => modes,
            None => {
                let client = source.connect().await.map_err(|e| fail(&e))?;
                vec![cluster::dataplane::cluster_mode(&client, None).await?]
            }
        };
        let clusters = Clusters::new(
            Provider::Kubeconfig {
                source,
                kind: None,
                preload: Vec::new(),
            },
            Deadlines::default(),
        );
        return Ok(Setup {
            session: Session::new(clusters, fixtures, Deadlines::default(), progress_lines())
                .with_metallb(metallb),
            modes,
            kubeconfig: true,
        });
    }
    let docker = cluster::docker_available().await.map_err(|e| fail(&e))?;
    let provider =
        svcconf_suites::kind_provider(&project, kit.as_ref(), &fixtures, &docker).await?;
    let clusters = Clusters::new(provider, Deadlines::default());
    Ok(Setup {
        session: Session::new(clusters, fixtures, Deadlines::default(), progress_lines())
            .with_metallb(metallb),
        modes: listed.unwrap_or_else(|| vec![ProxyMode::Iptables, ProxyMode::Nftables]),
        kubeconfig: false,
    })
}

/// The runs of one mode, or why there are none.
async fn bench_mode(
    setup: &Setup,
    mode: ProxyMode,
    groups: &[(&'static str, Vec<Case>, Option<f64>)],
    runs: usize,
    concurrency: usize,
) -> Result<Vec<serde_json::Value>, String> {
    let started = Instant::now();
    // One runner for every run: what it sets up once (MetalLB) stays warm.
    let runner = setup.session.runner(mode).await?;
    let name = runner.cluster.info.name.clone();
    eprintln!(
        "[{mode}] cluster {name} ready in {:.0}s (not timed); {runs} runs per group, {concurrency} cases at a time",
        started.elapsed().as_secs_f64(),
    );
    let deadlines = Deadlines::default();
    let run_id = setup.session.run_id().to_string();
    let mut report = Vec::new();
    for (group, cases, target) in groups.iter().filter(|g| !g.1.is_empty()) {
        let mut rounds = Vec::new();
        for run in 1..=runs {
            let r = round(&setup.session, mode, cases, concurrency).await;
            let passed = r.results.iter().filter(|r| r.outcome.is_success()).count();
            eprintln!(
                "[{mode}] {group} run {run}/{runs}: {:.1}s wall, {passed} passed, {} failed",
                r.wall,
                r.results.len() - passed
            );
            rounds.push(r);
            // The next run starts on a cluster without this run's namespaces.
            if let Err(e) = namespace::delete_all(
                &runner.cluster.client,
                Some(&run_id),
                Some(deadlines.teardown),
            )
            .await
            {
                eprintln!("[{mode}] namespaces of run {run} not gone: {e}");
            }
        }
        report.push(summarize(mode, group, *target, &name, &rounds));
    }
    Ok(report)
}

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (runs, concurrency) = match (
        env_number("SVCCONF_BENCH_RUNS", DEFAULT_RUNS),
        env_number("SVCCONF_BENCH_CONCURRENCY", DEFAULT_CONCURRENCY),
    ) {
        (Ok(r), Ok(c)) => (r, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("svcconf bench: {e}");
            return ExitCode::from(2);
        }
    };
    let catalog = match svcconf_suites::catalog() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("svcconf bench: {}", cluster::error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let cases: Vec<Case> = catalog
        .cases()
        .iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.id().contains(f.as_str())))
        .cloned()
        .collect();
    if cases.is_empty() {
        eprintln!("svcconf bench: no case matches {filters:?}");
        return ExitCode::from(2);
    }
    let ids: Vec<String> = cases.iter().map(Case::id).collect();
    let groups = groups(cases, !filters.is_empty());
    let json_path = std::env::var_os("SVCCONF_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/svcconf-bench.json"));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let setup = match setup().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("svcconf bench: {e}");
                return ExitCode::from(2);
            }
        };
        let started = Instant::now();
        let mut report = Vec::new();
        let work = async {
            for &mode in &setup.modes {
                if let Some(reason) = cluster::mode_unavailable(mode).filter(|_| !setup.kubeconfig)
                {
                    println!("{mode}: unavailable: {reason}");
                    report.push(json!({"mode": mode, "available": false, "reason": reason}));
                    continue;
                }
                match bench_mode(&setup, mode, &groups, runs, concurrency).await {
                    Ok(groups) => report.extend(groups),
                    Err(reason) => {
                        println!("{mode}: no cluster: {reason}");
                        report.push(json!({"mode": mode, "available": false, "reason": reason}));
                    }
                }
            }
        };
        let interrupted = tokio::select! {
            _ = work => false,
            _ = tokio::signal::ctrl_c() => true,
        };
        // Clusters are kept (warm for the next bench). Each run's namespaces
        // went after it; those of an interrupted run go now.
        setup.session.finish(true, None, interrupted, started).await;
        if interrupted {
            eprintln!("interrupted");
            return ExitCode::from(130);
        }
        let failed = report
            .iter()
            .any(|m| m["failed"].as_u64().is_some_and(|n| n > 0));
        let document = json!({
            "runs": runs,
            "concurrency": concurrency,
            "cases": ids,
            "modes": report,
        });
        let written = std::fs::create_dir_all(json_path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| {
                std::fs::write(
                    &json_path,
                    serde_json::to_string_pretty(&document).expect("JSON"),
                )
            });
        match written {
            Ok(()) => println!("wrote {}", json_path.display()),
            Err(e) => eprintln!("svcconf bench: cannot write {}: {e}", json_path.display()),
        }
        if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}

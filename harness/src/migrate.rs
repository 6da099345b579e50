//! `svcconf migrate`: an operator's kube-proxy mode migration, checked. The
//! catalog runs in the cluster's current mode, kube-proxy is switched the
//! way an operator does it (`mode:` in the `kube-proxy` ConfigMap, then a
//! rollout restart), the catalog runs again, and a before/after table per
//! case is printed with the rules read from every node. A switch that does
//! not complete, a case that passed before and not after, or Ctrl-C/SIGTERM
//! puts the original configuration back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::cluster::proxy_mode::{self, Rules};
use crate::fixture::Fixtures;
use crate::model::{scaled, CaseOutcome, CaseResult, Dataplane, ProxyMode};
use crate::report::{self, ModeState, ReportFiles, RunRecord, TerminalReporter};
use crate::runner::{self, Clusters, Deadlines, Provider, RunPlan};
use crate::Exit;

/// How often a switch in progress is looked at.
const SWITCH_POLL: Duration = Duration::from_secs(2);

/// What `svcconf migrate` was asked to do, checked by the CLI.
pub struct Migration {
    /// The catalog in the cluster's current mode (`plan.modes == [from]`).
    pub plan: RunPlan,
    pub provider: Provider,
    pub fixtures: Arc<Fixtures>,
    pub client: kube::Client,
    pub from: ProxyMode,
    pub to: ProxyMode,
    /// `before/` and `after/` hold each run's JUnit and JSON; `migrate.json`
    /// the table.
    pub report_dir: PathBuf,
}

/// One case's row: its outcome in each mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub case: String,
    pub before: String,
    pub after: String,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    Same,
    /// Passed before, not after: the migration broke it.
    Regressed,
    /// Did not pass before, passes after.
    Fixed,
    /// Neither run passed it and the outcomes differ (e.g. skipped → failed).
    Changed,
}

/// The record `svcconf migrate` leaves in `migrate.json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary<'a> {
    from: ProxyMode,
    to: ProxyMode,
    rules_before: &'a str,
    rules_after: &'a str,
    /// Restart to every node running `to` with its rules in place.
    switch_seconds: Option<f64>,
    rows: &'a [Row],
    /// Where kube-proxy was left, and why.
    outcome: &'a str,
    /// Who programmed Services on each node, as each run found it.
    dataplane_before: Option<Dataplane>,
    dataplane_after: Option<Dataplane>,
}

/// The dataplane the run in `mode` found before its cases.
fn dataplane_of(record: &RunRecord, mode: ProxyMode) -> Option<Dataplane> {
    match record.modes.get(&mode) {
        Some(ModeState::Ready { cluster, .. }) => cluster.dataplane.clone(),
        _ => None,
    }
}

/// `label:` then one line per node, for the terminal.
fn print_dataplane(label: &str, dataplane: Option<&Dataplane>) {
    match dataplane {
        Some(d) => {
            println!("{label}:");
            for node in &d.nodes {
                println!("  {}", node.describe());
            }
        }
        None => println!("{label}: not read (that run did not start)"),
    }
}

/// Pairs the two runs' results by case (variant and mode aside), each
/// outcome in the terminal table's words.
pub fn compare(before: &[CaseResult], after: &[CaseResult]) -> Vec<Row> {
    before
        .iter()
        .map(|b| {
            let a = after
                .iter()
                .find(|a| a.key.suite == b.key.suite && a.key.case == b.key.case)
                .map(|a| &a.outcome);
            let passed = |o: &CaseOutcome| matches!(o, CaseOutcome::Passed);
            let change = match (passed(&b.outcome), a.is_some_and(passed)) {
                _ if a.map(CaseOutcome::label) == Some(b.outcome.label()) => Change::Same,
                (true, false) => Change::Regressed,
                (false, true) => Change::Fixed,
                _ => Change::Changed,
            };
            Row {
                case: format!("{}/{}", b.key.suite, b.key.case),
                before: b.outcome.label().to_string(),
                after: a.map_or("no result", CaseOutcome::label).to_string(),
                change,
            }
        })
        .collect()
}

/// The table as printed.
pub fn table(rows: &[Row], from: ProxyMode, to: ProxyMode) -> String {
    let (before, after) = (format!("before ({from})"), format!("after ({to})"));
    let width = |header: &str, cell: &dyn Fn(&Row) -> &str| {
        rows.iter()
            .map(|r| cell(r).len())
            .chain([header.len()])
            .max()
            .unwrap_or_default()
    };
    let w0 = width("case", &|r| &r.case);
    let w1 = width(&before, &|r| &r.before);
    let w2 = width(&after, &|r| &r.after);
    let mut out = format!("{:w0$}  {before:w1$}  {after:w2$}  change\n", "case");
    for r in rows {
        let change = match r.change {
            Change::Same => "",
            Change::Regressed => "REGRESSED",
            Change::Fixed => "fixed",
            Change::Changed => "changed",
        };
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {change}",
            r.case, r.before, r.after
        );
        out += line.trim_end();
        out += "\n";
    }
    out
}

/// The nodes' rules are read in each node's kube-proxy pod, so any
/// cluster's nodes are read the same way (kind's included).
const RULES: Rules<'static> = Rules::KubeProxyPod;

impl Migration {
    /// One run of the catalog in `mode`, reported under `report_dir/<phase>`.
    async fn run_in(
        &self,
        mode: ProxyMode,
        phase: &str,
        cancel: &watch::Receiver<bool>,
    ) -> (RunRecord, Exit) {
        let dir = self.report_dir.join(phase);
        let (events, reporting) =
            ReportFiles::in_dir(&dir).spawn(Some(Box::new(TerminalReporter::stderr())));
        let mut plan = self.plan.clone();
        plan.modes = vec![mode];
        plan.logs_dir = Some(dir.join("logs"));
        let deadlines = Deadlines::default();
        let clusters = Clusters::new(self.provider.clone(), deadlines.clone());
        let status = runner::run(
            &plan,
            clusters,
            self.fixtures.clone(),
            &deadlines,
            events,
            cancel.clone(),
        )
        .await;
        let (record, errors) = reporting.await.expect("reporter task");
        for e in errors {
            eprintln!("svcconf: error: {}", crate::cluster::error_chain(&e));
        }
        (record, status.exit())
    }

    /// Edits the ConfigMap, restarts kube-proxy, and waits until every node
    /// runs `to` with its rules in place: the evidence and the seconds from
    /// the restart, or why not.
    async fn switch(
        &self,
        original: &str,
        cancel: &watch::Receiver<bool>,
    ) -> Result<(String, f64), String> {
        let to = self.to;
        let config = proxy_mode::with_mode(original, to)
            .ok_or("kube-proxy's configuration has no top-level `mode:` line to edit")?;
        proxy_mode::configure(&self.client, &config).await?;
        eprintln!("migrate: ConfigMap kube-system/kube-proxy now says mode: {to}; restarting DaemonSet kube-system/kube-proxy");
        proxy_mode::restart(&self.client).await?;
        let started = Instant::now();
        let deadline = scaled(proxy_mode::ROLLOUT_DEADLINE);
        let mut cancel = cancel.clone();
        loop {
            match proxy_mode::switched(&self.client, RULES, to, "kube-system").await {
                Ok(evidence) => return Ok((evidence, started.elapsed().as_secs_f64())),
                Err(status) if started.elapsed() >= deadline => {
                    return Err(format!(
                        "kube-proxy not switched to {to} within {}s: {status}",
                        deadline.as_secs()
                    ))
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(SWITCH_POLL) => {}
                _ = cancel.wait_for(|c| *c) => return Err("interrupted during the switch".into()),
            }
        }
    }

    /// Runs the migration; the exit code: 0 migrated with no case
    /// regressed, 1 the switch failed or a case regressed (mode restored),
    /// 2 the cluster could not be run on, 130 interrupted (mode restored).
    pub async fn run(self, cancel: watch::Receiver<bool>) -> Exit {
        let (from, to) = (self.from, self.to);
        let original = match proxy_mode::configured(&self.client).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("svcconf: error: {e}");
                return Exit::BadInput;
            }
        };
        let rules_before = proxy_mode::switched(&self.client, RULES, from, "kube-system")
            .await
            .unwrap_or_else(|e| format!("not read: {e}"));
        eprintln!("migrate: before: {rules_before}");
        eprintln!("migrate: the catalog in {from}, before the switch");
        let (before, exit) = self.run_in(from, "before", &cancel).await;
        if matches!(exit, Exit::Interrupted | Exit::BadInput) {
            eprintln!("migrate: stopped before the switch; kube-proxy untouched ({from})");
            return exit;
        }
        let switched = self.switch(&original, &cancel).await;
        let (rules_after, seconds) = match &switched {
            Ok((evidence, seconds)) => (evidence.clone(), Some(*seconds)),
            Err(e) => (e.clone(), None),
        };
        let mut rows = Vec::new();
        let mut dataplane_after = None;
        let (outcome, exit) = if let Err(e) = &switched {
            eprintln!("migrate: {e}");
            let restored = proxy_mode::restore(&self.client, &original, from).await;
            let exit = if *cancel.borrow() {
                Exit::Interrupted
            } else {
                Exit::Failed
            };
            (format!("switch failed ({e}); {restored}"), exit)
        } else {
            eprintln!(
                "migrate: every node runs {to} {:.0}s after the restart: {rules_after}",
                seconds.unwrap_or_default()
            );
            eprintln!("migrate: the catalog in {to}, after the switch");
            let (after, exit) = self.run_in(to, "after", &cancel).await;
            dataplane_after = dataplane_of(&after, to);
            rows = compare(&before.results(), &after.results());
            let regressed: Vec<&str> = rows
                .iter()
                .filter(|r| r.change == Change::Regressed)
                .map(|r| r.case.as_str())
                .collect();
            let why = if exit == Exit::Interrupted {
                Some(("interrupted".to_string(), Exit::Interrupted))
            } else if exit == Exit::BadInput {
                Some((format!("the run in {to} could not start"), Exit::BadInput))
            } else if !regressed.is_empty() {
                Some((
                    format!("regressed in {to}: {}", regressed.join(", ")),
                    Exit::Failed,
                ))
            } else {
                None
            };
            match why {
                Some((why, exit)) => {
                    let restored = proxy_mode::restore(&self.client, &original, from).await;
                    (format!("{why}; {restored}"), exit)
                }
                None => (
                    format!("kube-proxy now runs {to}; no case regressed"),
                    Exit::Passed,
                ),
            }
        };
        if !rows.is_empty() {
            println!("{}", table(&rows, from, to));
        }
        println!("rules before ({from}): {rules_before}");
        println!("rules after ({to}): {rules_after}");
        let dataplane_before = dataplane_of(&before, from);
        print_dataplane(&format!("nodes before ({from})"), dataplane_before.as_ref());
        if switched.is_ok() {
            print_dataplane(&format!("nodes after ({to})"), dataplane_after.as_ref());
        }
        println!("migrate: {outcome}");
        let summary = Summary {
            from,
            to,
            rules_before: &rules_before,
            rules_after: &rules_after,
            switch_seconds: seconds,
            rows: &rows,
            outcome: &outcome,
            dataplane_before,
            dataplane_after,
        };
        let path = self.report_dir.join("migrate.json");
        let json = serde_json::to_vec_pretty(&summary).expect("summary serializes");
        if let Err(e) = report::write_file(&path, &json) {
            eprintln!("svcconf: error: {}", crate::cluster::error_chain(&e));
            return Exit::BadInput;
        }
        eprintln!(
            "reports: {} {} {}",
            self.report_dir.join("before").display(),
            self.report_dir.join("after").display(),
            path.display()
        );
        exit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CaseKey, Variant};

    fn result(mode: ProxyMode, case: &str, outcome: CaseOutcome) -> CaseResult {
        CaseResult {
            key: CaseKey {
                mode,
                family: None,
                suite: "routing".into(),
                case: case.into(),
                variant: Variant::Plain,
            },
            outcome,
            seconds: 1.0,
            namespace: None,
            evidence: String::new(),
        }
    }

    #[test]
    fn pairs_cases_across_modes_and_names_regressions() {
        let failed = || CaseOutcome::Failed {
            message: "x".into(),
        };
        let before = [
            result(ProxyMode::Iptables, "a", CaseOutcome::Passed),
            result(ProxyMode::Iptables, "b", CaseOutcome::Passed),
            result(ProxyMode::Iptables, "c", failed()),
            result(ProxyMode::Iptables, "d", CaseOutcome::Passed),
        ];
        let after = [
            result(ProxyMode::Nftables, "a", CaseOutcome::Passed),
            result(ProxyMode::Nftables, "b", failed()),
            result(ProxyMode::Nftables, "c", CaseOutcome::Passed),
        ];
        let rows = compare(&before, &after);
        let changes: Vec<Change> = rows.iter().map(|r| r.change).collect();
        assert_eq!(
            changes,
            [
                Change::Same,
                Change::Regressed,
                Change::Fixed,
                Change::Regressed
            ]
        );
        assert_eq!(rows[3].after, "no result");
        let printed = table(&rows, ProxyMode::Iptables, ProxyMode::Nftables);
        assert!(printed.contains("before (iptables)"));
        assert!(printed.lines().nth(2).unwrap().ends_with("REGRESSED"));
    }
}

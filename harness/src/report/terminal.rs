//! The terminal: a line per step and per finished case as they happen
//! (failures with their one line, evidence only on failure), then the
//! case × mode table and the counts.

use std::collections::BTreeMap;
use std::io::Write;

use super::{ModeState, ReportError, Reporter, RunRecord};
use crate::model::{Event, ProxyMode};

pub struct TerminalReporter {
    out: Box<dyn Write + Send>,
    /// Print evidence of failed cases.
    pub verbose_failures: bool,
}

impl TerminalReporter {
    pub fn stderr() -> Self {
        TerminalReporter {
            out: Box::new(std::io::stderr()),
            verbose_failures: true,
        }
    }
}

impl Reporter for TerminalReporter {
    fn on_event(&mut self, event: &Event, record: &RunRecord) -> Result<(), ReportError> {
        let text = match event {
            Event::RunStarted { planned } => {
                format!("svcconf: {} case runs planned\n", planned.len())
            }
            Event::ModeUnavailable { mode, reason } => format!("[{mode}] SKIPPED: {reason}\n"),
            Event::ClusterFailed { mode, reason } => {
                format!("[{mode}] ERROR: no cluster: {reason}\n")
            }
            Event::ClusterReady { cluster, seconds } => format!(
                "[{}] cluster {} ready in {seconds:.0}s: {} {}, {} nodes, kube-proxy {}\n",
                cluster.mode,
                cluster.name,
                cluster.provider,
                cluster.kubernetes_version,
                cluster.nodes,
                cluster.detected_mode.as_deref().unwrap_or("mode unknown")
            ),
            Event::Progress {
                mode: Some(mode),
                message,
            } => format!("[{mode}] {message}\n"),
            Event::Progress {
                mode: None,
                message,
            } => format!("{message}\n"),
            Event::CaseStarted { .. } => String::new(),
            Event::CaseFinished { result } => {
                let mut s = format!(
                    "{:>5}  {} ({:.1}s)\n",
                    result.outcome.label(),
                    result.key,
                    result.seconds
                );
                if let Some(message) = result.outcome.message() {
                    s.push_str(&format!("       {message}\n"));
                }
                if self.verbose_failures
                    && !result.outcome.is_success()
                    && !result.evidence.is_empty()
                {
                    for line in result.evidence.lines().take(40) {
                        s.push_str(&format!("       | {line}\n"));
                    }
                }
                s
            }
            Event::RunFinished { .. } => table(record),
        };
        // The terminal going away must not stop the run.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
        Ok(())
    }
}

/// The case × mode table, per-mode timings and the counts.
pub fn table(record: &RunRecord) -> String {
    let results = record.results();
    let modes: Vec<ProxyMode> = {
        let mut m: Vec<ProxyMode> = results.iter().map(|r| r.key.mode).collect();
        m.dedup();
        m.sort();
        m.dedup();
        m
    };
    let mut rows: BTreeMap<String, BTreeMap<ProxyMode, &'static str>> = BTreeMap::new();
    for r in &results {
        rows.entry(format!("{}/{}", r.key.suite, r.key.case_name()))
            .or_default()
            .insert(r.key.mode, r.outcome.label());
    }
    let width = rows.keys().map(String::len).max().unwrap_or(4).max(4);
    let mut s = format!("\n{:width$}", "case");
    for m in &modes {
        s.push_str(&format!("  {:<8}", m.as_str()));
    }
    s = s.trim_end().to_string();
    s.push('\n');
    for (case, by_mode) in &rows {
        s.push_str(&format!("{case:width$}"));
        for m in &modes {
            s.push_str(&format!("  {:<8}", by_mode.get(m).copied().unwrap_or("-")));
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
    }
    s.push('\n');
    for m in &modes {
        let line = match record.modes.get(m) {
            Some(ModeState::Ready { cluster, seconds }) => format!(
                "{m}: cluster {} up in {seconds:.0}s; cases took {:.1}s",
                cluster.name,
                record.case_seconds.get(m).copied().unwrap_or(0.0)
            ),
            Some(ModeState::Unavailable { reason }) => format!("{m}: skipped: {reason}"),
            Some(ModeState::ClusterFailed { reason }) => format!("{m}: no cluster: {reason}"),
            None => format!("{m}: not reached"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    let (p, f, e, sk) = record.counts();
    s.push_str(&format!(
        "{p} passed, {f} failed, {e} errors, {sk} skipped in {:.1}s",
        record.seconds
    ));
    if record.interrupted {
        s.push_str(" (interrupted)");
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn prints_case_by_mode() {
        let t = super::table(&crate::report::junit::tests::sample_record(false));
        assert!(
            t.contains("case                                iptables  nftables  ipvs\n"),
            "{t}"
        );
        assert!(
            t.contains("routing/clusterip-basic             pass      ERROR     skip\n"),
            "{t}"
        );
        assert!(
            t.contains("1 passed, 1 failed, 2 errors, 1 skipped in 300.0s"),
            "{t}"
        );
        assert!(t.contains("ipvs: skipped: ipvs mode is unavailable"), "{t}");
    }
}

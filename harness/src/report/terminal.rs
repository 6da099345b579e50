//! The terminal: a line per step and per finished case as they happen
//! (failures with their one line, evidence only on failure), then the
//! case × mode table and the counts. On a terminal, the running cases stay
//! on screen below those lines with their phase and elapsed time; without
//! one (CI), each case start gets a line and a wait longer than
//! [`HEARTBEAT`] gets a heartbeat naming what it waits for.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::{ModeState, ReportError, Reporter, RunRecord};
use crate::model::{CaseKey, CaseOutcome, Event, IpFamily, ProxyMode};

/// A phase this long without news gets a line in CI logs, and another
/// every time it lasts this much longer.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Running cases the live view shows at most.
const LIVE_ROWS: usize = 12;

pub struct TerminalReporter {
    out: Box<dyn Write + Send>,
    /// Print evidence of failed cases.
    pub verbose_failures: bool,
    /// Redraw the running cases below the log (a terminal), or print
    /// heartbeats instead (a CI log).
    live: bool,
    /// Lines of the live view now on screen, erased before the next output.
    drawn: usize,
    /// When each running case last got a heartbeat.
    heartbeats: BTreeMap<CaseKey, Instant>,
}

impl TerminalReporter {
    pub fn stderr() -> Self {
        let live = std::io::stderr().is_terminal();
        Self::new(Box::new(std::io::stderr()), live)
    }

    pub fn new(out: Box<dyn Write + Send>, live: bool) -> Self {
        TerminalReporter {
            out,
            verbose_failures: true,
            live,
            drawn: 0,
            heartbeats: BTreeMap::new(),
        }
    }

    /// The running cases, one line each: what the live view draws.
    fn live_view(record: &RunRecord) -> Vec<String> {
        let now = Instant::now();
        let mut rows: Vec<String> = record
            .running
            .iter()
            .take(LIVE_ROWS)
            .map(|(key, r)| {
                format!(
                    "  run  {key} ({:.0}s): {} ({:.0}s)",
                    (now - r.started).as_secs_f64(),
                    r.phase,
                    (now - r.phase_started).as_secs_f64()
                )
            })
            .collect();
        if record.running.len() > LIVE_ROWS {
            rows.push(format!(
                "  ... and {} more",
                record.running.len() - LIVE_ROWS
            ));
        }
        rows
    }

    /// Heartbeats for phases that have lasted [`HEARTBEAT`] since they began
    /// or since their last heartbeat.
    fn heartbeats(&mut self, record: &RunRecord) -> String {
        let now = Instant::now();
        self.heartbeats
            .retain(|k, _| record.running.contains_key(k));
        let mut out = String::new();
        for (key, r) in &record.running {
            let since = self
                .heartbeats
                .get(key)
                .copied()
                .filter(|t| *t > r.phase_started)
                .unwrap_or(r.phase_started);
            if now - since >= HEARTBEAT {
                out.push_str(&format!(
                    "  ...  {key}: still {} after {:.0}s (case running {:.0}s)\n",
                    r.phase,
                    (now - r.phase_started).as_secs_f64(),
                    (now - r.started).as_secs_f64()
                ));
                self.heartbeats.insert(key.clone(), now);
            }
        }
        out
    }
}

impl Reporter for TerminalReporter {
    fn on_event(&mut self, event: &Event, record: &RunRecord) -> Result<(), ReportError> {
        let text = match event {
            Event::CaseStarted { key } if !self.live => format!("start  {key}\n"),
            Event::Tick if !self.live => self.heartbeats(record),
            // The table that follows names a setup failure.
            Event::CaseStarted { .. }
            | Event::CasePhase { .. }
            | Event::Tick
            | Event::SetupFailed { .. } => String::new(),
            Event::RunStarted { planned } => {
                format!("svcconf: {} case runs planned\n", planned.len())
            }
            Event::ModeUnavailable { mode, reason } => format!("[{mode}] SKIPPED: {reason}\n"),
            Event::ClusterFailed { mode, reason } => {
                format!("[{mode}] ERROR: no cluster: {reason}\n")
            }
            Event::ClusterReady { cluster, seconds } => {
                let mut text = format!(
                    "[{}] cluster {} ready in {seconds:.0}s: {} {}, {} nodes, kube-proxy {}\n",
                    cluster.mode,
                    cluster.name,
                    cluster.provider,
                    cluster.kubernetes_version,
                    cluster.nodes,
                    cluster.detected_mode.as_deref().unwrap_or("mode unknown")
                );
                text.push_str(&format!(
                    "[{}] {}\n",
                    cluster.mode,
                    cluster.describe_families()
                ));
                if let Some(dataplane) = &cluster.dataplane {
                    text.push_str(&format!(
                        "[{}] Service dataplane per node (read in {:.1}s):\n",
                        cluster.mode, dataplane.seconds
                    ));
                    for node in &dataplane.nodes {
                        text.push_str(&format!("[{}]   {}\n", cluster.mode, node.describe()));
                    }
                    for problem in dataplane.problems(None) {
                        text.push_str(&format!("[{}] WARNING: {problem}\n", cluster.mode));
                    }
                }
                text
            }
            Event::Progress {
                mode: Some(mode),
                message,
            } => format!("[{mode}] {message}\n"),
            Event::Progress {
                mode: None,
                message,
            } => format!("{message}\n"),
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
        let mut screen = String::new();
        if self.live && self.drawn > 0 {
            // Up to the first line of the live view, and clear from there.
            screen.push_str(&format!("\x1b[{}A\x1b[J", self.drawn));
        }
        screen.push_str(&text);
        self.drawn = 0;
        if self.live && !matches!(event, Event::RunFinished { .. }) {
            for row in Self::live_view(record) {
                screen.push_str(&row);
                screen.push('\n');
                self.drawn += 1;
            }
        }
        // The terminal going away must not stop the run.
        let _ = self.out.write_all(screen.as_bytes());
        let _ = self.out.flush();
        Ok(())
    }
}

/// The case × mode table, per-mode timings and the counts.
pub fn table(record: &RunRecord) -> String {
    let results = record.results();
    // A column per mode, and per family where the run names families.
    let columns: Vec<(ProxyMode, Option<IpFamily>)> = results
        .iter()
        .map(|r| (r.key.mode, r.key.family))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let modes: Vec<ProxyMode> = {
        let mut m: Vec<ProxyMode> = columns.iter().map(|c| c.0).collect();
        m.dedup();
        m
    };
    let mut rows: BTreeMap<String, BTreeMap<(ProxyMode, Option<IpFamily>), &'static str>> =
        BTreeMap::new();
    for r in &results {
        rows.entry(format!("{}/{}", r.key.suite, r.key.case_name()))
            .or_default()
            .insert((r.key.mode, r.key.family), r.outcome.label());
    }
    let heading = |(mode, family): &(ProxyMode, Option<IpFamily>)| match family {
        Some(f) => format!("{mode}/{f}"),
        None => mode.to_string(),
    };
    let cell = columns
        .iter()
        .map(|c| heading(c).len())
        .max()
        .unwrap_or(8)
        .max(8);
    let width = rows.keys().map(String::len).max().unwrap_or(4).max(4);
    let mut s = format!("\n{:width$}", "case");
    for c in &columns {
        s.push_str(&format!("  {:<cell$}", heading(c)));
    }
    s = s.trim_end().to_string();
    s.push('\n');
    for (case, by_column) in &rows {
        s.push_str(&format!("{case:width$}"));
        for c in &columns {
            s.push_str(&format!(
                "  {:<cell$}",
                by_column.get(c).copied().unwrap_or("-")
            ));
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
    }
    s.push('\n');
    for m in &modes {
        let line = match record.modes.get(m) {
            Some(ModeState::Ready { cluster, seconds }) => format!(
                "{m}: cluster {} (Kubernetes {}) up in {seconds:.0}s; cases took {:.1}s",
                cluster.name,
                cluster.kubernetes_version,
                record.case_seconds.get(m).copied().unwrap_or(0.0)
            ),
            Some(ModeState::Unavailable { reason }) => format!("{m}: skipped: {reason}"),
            Some(ModeState::ClusterFailed { reason }) => format!("{m}: no cluster: {reason}"),
            None => format!("{m}: not reached"),
        };
        s.push_str(&line);
        s.push('\n');
    }
    // Cases that never ran because the cluster cannot meet what they need,
    // grouped by what is missing.
    let mut unmet: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in &results {
        if let CaseOutcome::Error { message } = &r.outcome {
            if message.starts_with("needs ") {
                unmet.entry(message).or_default().push(r.key.to_string());
            }
        }
    }
    if !unmet.is_empty() {
        s.push_str("not run, the cluster cannot give what they need:\n");
        for (need, cases) in &unmet {
            s.push_str(&format!("  {need}: {}\n", cases.join(", ")));
        }
    }
    if let Some(reason) = &record.setup_error {
        s.push_str(&format!("setup: {reason}\n"));
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
        assert!(t.contains("(Kubernetes v1.34.4)"), "{t}");
    }

    /// Output into a buffer the test can read.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_terminal_a_long_wait_gets_a_heartbeat_naming_it() {
        use super::*;
        use crate::model::Variant;
        let buffer = Buffer::default();
        let mut reporter = TerminalReporter::new(Box::new(buffer.clone()), false);
        let mut record = RunRecord::default();
        let key = CaseKey {
            mode: ProxyMode::Nftables,
            family: None,
            suite: "routing".into(),
            case: "clusterip-basic".into(),
            variant: Variant::Plain,
        };
        let mut feed = |e: Event, record: &mut RunRecord| {
            record.apply(&e);
            reporter.on_event(&e, record).unwrap();
        };
        feed(Event::CaseStarted { key: key.clone() }, &mut record);
        let phase = "waiting for Deployment web".to_string();
        feed(
            Event::CasePhase {
                key: key.clone(),
                phase,
            },
            &mut record,
        );
        feed(Event::Tick, &mut record);
        // The phase began long ago: the next tick names it, once per period.
        let long_ago = Instant::now() - Duration::from_secs(20);
        record.running.get_mut(&key).unwrap().phase_started = long_ago;
        feed(Event::Tick, &mut record);
        feed(Event::Tick, &mut record);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.starts_with("start  nftables::routing::clusterip-basic\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("still waiting for Deployment web after 20s")
                .count(),
            1,
            "{text}"
        );
    }
}

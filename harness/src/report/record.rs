//! The state of a run as the events tell it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{CaseKey, CaseOutcome, CaseResult, ClusterInfo, Event, ProxyMode};

/// What happened to a mode's cluster.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ModeState {
    Ready { cluster: ClusterInfo, seconds: f64 },
    Unavailable { reason: String },
    ClusterFailed { reason: String },
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub planned: Vec<CaseKey>,
    pub modes: BTreeMap<ProxyMode, ModeState>,
    #[serde(skip)]
    finished: BTreeMap<CaseKey, CaseResult>,
    /// Wall time of the cases per mode: first start to last finish.
    pub case_seconds: BTreeMap<ProxyMode, f64>,
    #[serde(skip)]
    mode_started: BTreeMap<ProxyMode, std::time::Instant>,
    pub seconds: f64,
    pub interrupted: bool,
    pub finished_run: bool,
    /// Why no case could run, when the run failed before its cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_error: Option<String>,
    /// Cases started and not finished: their phase and clocks.
    #[serde(skip)]
    pub running: BTreeMap<CaseKey, Running>,
}

/// A case that is running, as the live view and heartbeats show it.
#[derive(Debug, Clone)]
pub struct Running {
    pub started: std::time::Instant,
    pub phase: String,
    pub phase_started: std::time::Instant,
}

impl RunRecord {
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::RunStarted { planned } => self.planned = planned.clone(),
            Event::ModeUnavailable { mode, reason } => {
                self.modes.insert(
                    *mode,
                    ModeState::Unavailable {
                        reason: reason.clone(),
                    },
                );
            }
            Event::ClusterFailed { mode, reason } => {
                self.modes.insert(
                    *mode,
                    ModeState::ClusterFailed {
                        reason: reason.clone(),
                    },
                );
            }
            Event::ClusterReady { cluster, seconds } => {
                self.modes.insert(
                    cluster.mode,
                    ModeState::Ready {
                        cluster: cluster.clone(),
                        seconds: *seconds,
                    },
                );
            }
            Event::CaseStarted { key } => {
                let now = std::time::Instant::now();
                self.mode_started.entry(key.mode).or_insert(now);
                self.running.insert(
                    key.clone(),
                    Running {
                        started: now,
                        phase: "starting".into(),
                        phase_started: now,
                    },
                );
            }
            Event::CasePhase { key, phase } => {
                if let Some(r) = self.running.get_mut(key) {
                    r.phase = phase.clone();
                    r.phase_started = std::time::Instant::now();
                }
            }
            Event::SetupFailed { reason } => self.setup_error = Some(reason.clone()),
            Event::CaseFinished { result } => {
                if let Some(start) = self.mode_started.get(&result.key.mode) {
                    self.case_seconds
                        .insert(result.key.mode, start.elapsed().as_secs_f64());
                }
                self.running.remove(&result.key);
                self.finished.insert(result.key.clone(), result.clone());
            }
            Event::Progress { .. } | Event::Tick => {}
            Event::RunFinished {
                seconds,
                interrupted,
            } => {
                self.seconds = *seconds;
                self.interrupted = *interrupted;
                self.finished_run = true;
            }
        }
    }

    /// A result for every planned run, in plan order: what finished, and for
    /// the rest a skip (mode unavailable) or an error (no result).
    pub fn results(&self) -> Vec<CaseResult> {
        self.planned
            .iter()
            .map(|key| {
                if let Some(r) = self.finished.get(key) {
                    return r.clone();
                }
                let outcome = match self.modes.get(&key.mode) {
                    Some(ModeState::Unavailable { reason }) => CaseOutcome::Skipped {
                        reason: reason.clone(),
                    },
                    Some(ModeState::ClusterFailed { reason }) => CaseOutcome::Error {
                        message: format!("no result: no {} cluster: {reason}", key.mode),
                    },
                    _ if self.interrupted => CaseOutcome::Error {
                        message: "no result: the run was interrupted before this case finished"
                            .into(),
                    },
                    _ => CaseOutcome::Error {
                        message: "no result: the case never finished".into(),
                    },
                };
                CaseResult {
                    key: key.clone(),
                    outcome,
                    seconds: 0.0,
                    namespace: None,
                    evidence: String::new(),
                }
            })
            .collect()
    }

    /// (passed, failed, errors, skipped) over [`RunRecord::results`]; a
    /// setup error counts as an error.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, usize::from(self.setup_error.is_some()), 0);
        for r in self.results() {
            match r.outcome {
                CaseOutcome::Passed => c.0 += 1,
                CaseOutcome::Failed { .. } => c.1 += 1,
                CaseOutcome::Error { .. } => c.2 += 1,
                CaseOutcome::Skipped { .. } => c.3 += 1,
            }
        }
        c
    }
}

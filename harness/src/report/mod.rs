//! Reporters consume the runner's events: a live terminal view with a
//! case × mode table, a JUnit file, a JSON file. All of them read the same
//! [`RunRecord`], which turns planned runs without a result into errors.

mod audit;
mod json;
mod junit;
mod record;
pub mod sonobuoy;
mod terminal;

pub use audit::{audit_json, audit_junit, audit_table};
pub use json::JsonReporter;
pub use junit::{junit_xml, JunitReporter};
pub use record::{ModeState, RunRecord};
pub use sonobuoy::SonobuoyResults;
pub use terminal::{table, TerminalReporter};

use std::path::{Path, PathBuf};

use crate::model::Event;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the JUnit XML")]
    Junit(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot serialize the JSON report")]
    Json(#[source] serde_json::Error),
}

/// Something that consumes run events.
pub trait Reporter: Send {
    fn on_event(&mut self, event: &Event, record: &RunRecord) -> Result<(), ReportError>;
}

/// Feeds every event to the record and then to every reporter; the first
/// reporter error is kept and returned at the end (the run goes on).
pub struct Reporters {
    pub record: RunRecord,
    reporters: Vec<Box<dyn Reporter>>,
    errors: Vec<ReportError>,
}

impl Reporters {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Self {
        Reporters {
            record: RunRecord::default(),
            reporters,
            errors: Vec::new(),
        }
    }

    pub fn handle(&mut self, event: &Event) {
        self.record.apply(event);
        for r in &mut self.reporters {
            if let Err(e) = r.on_event(event, &self.record) {
                self.errors.push(e);
            }
        }
    }

    pub fn finish(self) -> (RunRecord, Vec<ReportError>) {
        (self.record, self.errors)
    }
}

/// The reporters' task of [`spawn`]: the record and the reporter errors.
pub type RecordedRun = tokio::task::JoinHandle<(RunRecord, Vec<ReportError>)>;

/// A task that feeds the events sent on the returned channel to
/// `reporters` until `RunFinished` (or every sender is dropped: a sender
/// still held by a case cut short must not keep the reports unwritten), then
/// hands back the record and the reporter errors.
pub fn spawn(
    reporters: Vec<Box<dyn Reporter>>,
) -> (tokio::sync::mpsc::UnboundedSender<Event>, RecordedRun) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut reporters = Reporters::new(reporters);
        while let Some(event) = rx.recv().await {
            reporters.handle(&event);
            if matches!(event, Event::RunFinished { .. }) {
                break;
            }
        }
        reporters.finish()
    });
    (tx, task)
}

/// Where a run's reports are written: the one place a run's reporters are
/// put together (`svcconf run`, each phase of `svcconf migrate`, the kind
/// tests, a sonobuoy run that could not start).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub junit: PathBuf,
    /// `None`: JUnit only (all sonobuoy reads).
    pub json: Option<PathBuf>,
}

impl ReportFiles {
    /// `junit.xml` and `report.json` in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        ReportFiles {
            junit: dir.join("junit.xml"),
            json: Some(dir.join("report.json")),
        }
    }

    /// `progress` (what the caller shows while the run goes: the terminal's
    /// live view, a test harness's lines), then one reporter per file.
    pub fn reporters(&self, progress: Option<Box<dyn Reporter>>) -> Vec<Box<dyn Reporter>> {
        let mut reporters: Vec<Box<dyn Reporter>> = progress.into_iter().collect();
        reporters.push(Box::new(JunitReporter::new(self.junit.clone())));
        if let Some(json) = &self.json {
            reporters.push(Box::new(JsonReporter::new(json.clone())));
        }
        reporters
    }

    /// [`spawn`] over [`ReportFiles::reporters`].
    pub fn spawn(
        &self,
        progress: Option<Box<dyn Reporter>>,
    ) -> (tokio::sync::mpsc::UnboundedSender<Event>, RecordedRun) {
        spawn(self.reporters(progress))
    }
}

impl std::fmt::Display for ReportFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.junit.display())?;
        match &self.json {
            Some(json) => write!(f, " {}", json.display()),
            None => Ok(()),
        }
    }
}

/// Writes `contents` to `path`, creating parent directories.
pub(crate) fn write_file(path: &std::path::Path, contents: &[u8]) -> Result<(), ReportError> {
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)
    };
    write().map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

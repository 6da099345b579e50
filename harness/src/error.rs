//! The one top-level error of the CLI: everything that stops a run before a
//! verdict (bad input or infrastructure), and the documented exit codes.

use crate::catalog::CatalogError;
use crate::cluster::{KindError, KitError, KubeconfigError, PreflightError};
use crate::kube::manifest::ManifestError;
use crate::report::ReportError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Kit(#[from] KitError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Kind(#[from] KindError),
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    BadInput(String),
    #[error("cannot read {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How `svcconf` (and `kubectl svcconf`) exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Every case run passed (or was skipped because a mode in the default
    /// set cannot run here).
    Passed = 0,
    /// A case failed, or had no result.
    Failed = 1,
    /// Bad input or infrastructure: a flag, kubeconfig, context, case file,
    /// unreachable API server, missing docker, a mode asked for by name that
    /// cannot run here, a cluster that could not be brought up.
    BadInput = 2,
    /// Ctrl-C or SIGTERM; what the run created is removed, reports written.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl Error {
    /// Every [`Error`] is bad input or infrastructure.
    pub fn exit(&self) -> Exit {
        Exit::BadInput
    }
}

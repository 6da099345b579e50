//! The one top-level error of the CLI: everything that stops a run before a
//! verdict (bad input or infrastructure), each mapped to exit code 2.

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

impl Error {
    /// Bad input and broken infrastructure both exit 2 (1 is for cases
    /// that failed, 0 for a clean run).
    pub fn exit_code(&self) -> u8 {
        2
    }
}

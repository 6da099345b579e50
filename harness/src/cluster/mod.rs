//! Where cases run: a kind cluster per proxy mode, or the cluster a
//! kubeconfig points at. Either way the runner gets a [`Cluster`]: a client
//! and the facts reporters need.

pub(crate) mod command;
mod info;
mod kind;
mod kit;
mod kubeconfig;
mod preflight;
mod proxy_mode;

pub use command::CommandError;
pub use info::{describe_cluster, wait_cluster_ready};
pub use kind::{docker_has_image, proxy_rules, Kind, KindCluster, KindError};
pub use kit::{Kit, KitError, KitImages};
pub use kubeconfig::{connect, error_chain, KubeconfigError, KubeconfigSource};
pub use preflight::{docker_available, kind_host_warnings, mode_unavailable, PreflightError};
pub use proxy_mode::{detect_proxy_mode, DetectedMode};

use crate::model::ClusterInfo;

/// A cluster ready for cases.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub info: ClusterInfo,
    /// For kind clusters: the docker binary, so failures can carry the
    /// nodes' proxy rules (node names are container names).
    pub docker: Option<std::path::PathBuf>,
}

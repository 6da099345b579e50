//! Where cases run: a kind cluster per proxy mode, or the cluster a
//! kubeconfig points at. Either way the runner gets a [`Cluster`]: a client
//! and the facts reporters need.

pub mod audit;
pub mod clusters;
pub(crate) mod command;
pub mod dataplane;
pub mod docker;
mod images;
mod info;
pub mod inside;
mod kind;
mod kit;
mod kubeconfig;
pub mod metallb;
mod preflight;
pub mod proxy_mode;
pub mod undo;

pub use command::CommandError;
pub use images::NodeImages;
pub use info::{
    capacity, describe_cluster, families, is_local_kind, kind_cluster_name, local_kind_cluster,
    shared_problems, wait_cluster_ready, ClusterFamilies,
};
pub use kind::{
    docker_has_image, kind_config_for_host, kind_network_subnets, proxy_rules, Kind, KindCluster,
    KindError,
};
pub use kit::{node_image, normalize_kubernetes_version, Kit, KitError, KitImages, KitManifests};
pub use kubeconfig::{connect, error_chain, KubeconfigError, KubeconfigSource};
pub use preflight::{
    docker_available, host_cgroup_v1, kind_host_warnings, mode_unavailable, PreflightError,
};

use crate::model::ClusterInfo;

/// A cluster ready for cases.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub info: ClusterInfo,
    /// For kind clusters: the docker binary, so failures can carry the
    /// nodes' proxy rules (node names are container names).
    pub docker: Option<std::path::PathBuf>,
    /// For kind clusters: loads local images into the nodes on demand.
    pub node_images: Option<NodeImages>,
    /// Cluster-wide objects this run installed (MetalLB) on a cluster it
    /// does not delete: removed at teardown.
    pub installed: std::sync::Arc<metallb::Installed>,
    /// svcconf runs in a pod of this very cluster (its service account):
    /// nothing it starts is outside the cluster (`inside`).
    pub in_pod: bool,
    /// Cases may change what every workload of the cluster depends on
    /// (kube-proxy's mode): a kind cluster of svcconf's, or a kubeconfig
    /// cluster with `SVCCONF_ALLOW_MODE_SWITCH=1`.
    pub may_switch_mode: bool,
}

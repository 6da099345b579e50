//! The run's client pods: one DaemonSet per cluster, in a namespace of the
//! run, started by the first case that sends from it and shared by every case
//! of the mode that does not need its own (`ClientPods::Shared`). Three client
//! pods per case were much of a small machine's suite time; the probe in a
//! shared pod resolves names as a pod of the case's namespace does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OnceCell};

use super::cluster_error_chain;
use crate::cluster::Cluster;
use crate::fixture::{Fixtures, CLIENTS_DAEMONSET};
use crate::kube::apply::Applier;
use crate::kube::jig::Jig;
use crate::kube::{manifest, namespace};
use crate::model::{PodSecurity, Readiness};

/// The `svcconf.io/case` label of the shared clients' namespace.
const NAMESPACE_CASE: &str = "clients";

#[derive(Default)]
pub struct SharedClients {
    /// The namespace of the ready client pods, or why there is none: every
    /// case that asks later gets the same answer, until `delete` starts over.
    ready: Mutex<Arc<OnceCell<Result<String, String>>>>,
}

impl SharedClients {
    /// The namespace of the ready shared client pods, started now if no
    /// case did yet.
    pub async fn namespace(
        &self,
        cluster: &Cluster,
        applier: &Applier,
        fixtures: &Fixtures,
        run_id: &str,
        deadline: Duration,
    ) -> Result<String, String> {
        let ready = self.ready.lock().await.clone();
        ready
            .get_or_init(|| async {
                let objects = fixtures.clients().map_err(|e| cluster_error_chain(&e))?;
                if let Some(nodes) = &cluster.node_images {
                    let images: Vec<String> = objects.iter().flat_map(manifest::images).collect();
                    nodes.ensure(&images, false).await?;
                }
                let pod_security = PodSecurity::default();
                let ns = namespace::create(
                    &cluster.client,
                    NAMESPACE_CASE,
                    run_id,
                    pod_security.as_str(),
                )
                .await
                .map_err(|e| {
                    format!("cannot create their namespace: {}", cluster_error_chain(&e))
                })?;
                for object in &objects {
                    applier
                        .apply(&ns, object)
                        .await
                        .map_err(|e| format!("apply: {}", cluster_error_chain(&e)))?;
                }
                let jig = Jig::new(cluster.client.clone(), ns.clone());
                jig.wait(&Readiness::DaemonSet(CLIENTS_DAEMONSET.into()), deadline)
                    .await
                    .map_err(|e| cluster_error_chain(&e))?;
                Ok(ns)
            })
            .await
            .clone()
    }

    /// Deletes them, when the mode's cases are done (a later case starts
    /// them anew); what happened, if anything did.
    pub async fn delete(&self, cluster: &Cluster) -> Option<String> {
        let ready = std::mem::take(&mut *self.ready.lock().await);
        let Some(Ok(ns)) = ready.get() else {
            return None;
        };
        Some(match namespace::delete(&cluster.client, ns).await {
            Ok(()) => format!("deleted the shared client pods' namespace {ns}"),
            Err(e) => format!("could not delete namespace {ns}: {e}"),
        })
    }
}

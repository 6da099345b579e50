//! The per-case jig: one namespace, the objects a case applied into it, and
//! the questions and waits cases ask of them.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::wait::{self, WaitError};
use crate::model::Readiness;
use crate::verdict::PodFact;

/// Label that marks the harness's client pods (fixtures/common/clients.yaml).
pub const CLIENT_SELECTOR: &str = "app.kubernetes.io/name=svcconf-client";

#[derive(Debug, thiserror::Error)]
pub enum JigError {
    #[error("{what} in namespace {namespace}")]
    Api {
        what: String,
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("Service {service} in namespace {namespace} has no ClusterIP")]
    NoClusterIp { service: String, namespace: String },
}

#[derive(Clone)]
pub struct Jig {
    pub client: Client,
    pub namespace: String,
}

fn endpoint_slice_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
        "endpointslices",
    )
}

impl Jig {
    pub fn new(client: Client, namespace: String) -> Self {
        Jig { client, namespace }
    }

    fn api_error(&self, what: String) -> impl FnOnce(kube::Error) -> JigError + '_ {
        move |source| JigError::Api {
            what,
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// The ClusterIP of `service` (sanity: a ClusterIP Service has one).
    pub async fn cluster_ip(&self, service: &str) -> Result<String, JigError> {
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(service)
            .await
            .map_err(self.api_error(format!("get Service {service}")))?;
        svc.spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .ok_or_else(|| JigError::NoClusterIp {
                service: service.into(),
                namespace: self.namespace.clone(),
            })
    }

    /// Running, Ready, not terminating pods matching `selector`.
    pub async fn ready_pods(&self, selector: &str) -> Result<Vec<PodFact>, JigError> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(self.api_error(format!("list pods {selector}")))?;
        let mut out: Vec<PodFact> = pods
            .items
            .iter()
            .filter(|p| is_ready(p))
            .map(pod_fact)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The harness's ready client pods, one per node.
    pub async fn client_pods(&self) -> Result<Vec<PodFact>, JigError> {
        self.ready_pods(CLIENT_SELECTOR).await
    }

    /// Waits for one declared readiness, up to `deadline`.
    pub async fn wait(&self, readiness: &Readiness, deadline: Duration) -> Result<(), WaitError> {
        let ns = &self.namespace;
        match readiness {
            Readiness::Deployment(name) => {
                wait::until(
                    Api::<Deployment>::namespaced(self.client.clone(), ns),
                    Some(&format!("metadata.name={name}")),
                    format!("Deployment {name} in ns {ns}"),
                    deadline,
                    wait::deployment_available(name),
                )
                .await
            }
            Readiness::DaemonSet(name) => {
                wait::until(
                    Api::<DaemonSet>::namespaced(self.client.clone(), ns),
                    Some(&format!("metadata.name={name}")),
                    format!("DaemonSet {name} in ns {ns}"),
                    deadline,
                    wait::daemonset_ready(name),
                )
                .await
            }
            Readiness::EndpointSlices {
                service,
                ready,
                ports,
            } => {
                wait::until_config(
                    Api::<DynamicObject>::namespaced_with(
                        self.client.clone(),
                        ns,
                        &endpoint_slice_resource(),
                    ),
                    watcher::Config::default()
                        .labels(&format!("kubernetes.io/service-name={service}")),
                    format!("EndpointSlices of Service {service} in ns {ns}"),
                    deadline,
                    wait::endpoint_slices_ready(*ready, ports),
                )
                .await
            }
        }
    }

    /// One line per pod that is not Ready, with why: evidence for a failed wait.
    pub async fn unready_pods(&self) -> String {
        let Ok(pods) = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default())
            .await
        else {
            return String::new();
        };
        let mut lines = Vec::new();
        for pod in pods.items.iter().filter(|p| !is_ready(p)) {
            let status = pod.status.clone().unwrap_or_default();
            let mut why: Vec<String> = Vec::new();
            for cs in status.container_statuses.iter().flatten() {
                if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                    why.push(format!(
                        "{}: {} {}",
                        cs.name,
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default()
                    ));
                }
            }
            for c in status
                .conditions
                .iter()
                .flatten()
                .filter(|c| c.status != "True")
            {
                if let Some(m) = &c.message {
                    why.push(format!("{}: {m}", c.type_));
                }
            }
            lines.push(format!(
                "pod {} ({}) on {}: {}",
                pod.name_any(),
                status.phase.unwrap_or_default(),
                pod.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "<unscheduled>".into()),
                why.join("; ")
            ));
        }
        lines.join("\n")
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn pod_fact(pod: &Pod) -> PodFact {
    PodFact {
        name: pod.name_any(),
        ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    }
}

//! The per-case jig: one namespace, the objects a case applied into it, and
//! the questions and waits cases ask of them.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::networking::v1::IPAddress;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::wait::{self, WaitError};
use crate::model::{ClusterSize, FamilyRank, IpFamily, Readiness};
use crate::template::{PodFact, SliceFact};

/// How long a LoadBalancer Service that nothing implements is watched to
/// stay Pending after the implemented one got its address.
const PENDING_WINDOW: Duration = Duration::from_secs(3);

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
    #[error("Service {service} in namespace {namespace} has no {family} ClusterIP")]
    NoClusterIp {
        service: String,
        namespace: String,
        family: IpFamily,
    },
}

#[derive(Clone)]
pub struct Jig {
    pub client: Client,
    pub namespace: String,
    /// Where the client pods run: the case's namespace, or the run's shared
    /// one.
    pub clients: String,
    /// The family the case runs in: the ClusterIP, pod and node addresses
    /// it asks for are of this family.
    pub family: IpFamily,
    /// The cluster is dual-stack: the case's Services are made single-stack
    /// in `family` ([`Jig::manifest`]).
    pub dual_stack: bool,
    /// The cluster's EndpointSlice size limit (kube-controller-manager's
    /// `--max-endpoints-per-slice`: what `${maxEndpointsPerSlice:N%}` and a
    /// count written so are shares of) and node count (`${nodes}`).
    pub size: ClusterSize,
}

/// The label the EndpointSlice controller (and kube-proxy) ties a slice to
/// its Service by.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A watch of the Service's EndpointSlices (by the label the controller sets).
fn slices_of(service: &str) -> watcher::Config {
    watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"))
}

/// A watch of the one object of this name.
fn named(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

fn endpoint_slice_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
        "endpointslices",
    )
}

impl Jig {
    pub fn new(client: Client, namespace: String) -> Self {
        Jig {
            client,
            clients: namespace.clone(),
            namespace,
            family: IpFamily::Ipv4,
            dual_stack: false,
            size: ClusterSize::UNREAD,
        }
    }

    /// The same jig on a cluster of this size.
    pub fn with_size(self, size: ClusterSize) -> Self {
        Jig { size, ..self }
    }

    /// The same jig, sending from the client pods of namespace `clients`.
    pub fn with_clients(self, clients: String) -> Self {
        Jig { clients, ..self }
    }

    /// The same jig, in `family` of a cluster that has one family or two.
    pub fn with_family(self, family: IpFamily, dual_stack: bool) -> Self {
        Jig {
            family,
            dual_stack,
            ..self
        }
    }

    /// The same jig in another namespace (its clients there too).
    pub fn in_namespace(&self, namespace: String) -> Self {
        Jig::new(self.client.clone(), namespace)
            .with_family(self.family, self.dual_stack)
            .with_size(self.size)
    }

    /// An object as the case applies it, in the jig's family (see
    /// [`super::manifest::in_family`]).
    pub fn manifest(&self, object: &serde_json::Value) -> serde_json::Value {
        super::manifest::in_family(object, self.family, self.dual_stack)
    }

    fn slices_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &endpoint_slice_resource(),
        )
    }

    fn api_error(&self, what: String) -> impl FnOnce(kube::Error) -> JigError + '_ {
        move |source| JigError::Api {
            what,
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// The ClusterIP of `service` in the jig's family (sanity: a ClusterIP
    /// Service has one).
    pub async fn cluster_ip(&self, service: &str) -> Result<String, JigError> {
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(service)
            .await
            .map_err(self.api_error(format!("get Service {service}")))?;
        let spec = svc.spec.unwrap_or_default();
        let ips = match spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips,
            _ => spec.cluster_ip.into_iter().collect(),
        };
        self.family
            .pick(&ips)
            .map(String::from)
            .ok_or_else(|| JigError::NoClusterIp {
                service: service.into(),
                namespace: self.namespace.clone(),
                family: self.family,
            })
    }

    /// Running, Ready, not terminating pods matching `selector`.
    pub async fn ready_pods(&self, selector: &str) -> Result<Vec<PodFact>, JigError> {
        self.pods_where(selector, is_ready).await
    }

    /// Pods matching `selector` that run with an IP, ready or not,
    /// terminating or not.
    pub async fn running_pods(&self, selector: &str) -> Result<Vec<PodFact>, JigError> {
        self.pods_where(selector, |p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
        })
        .await
    }

    /// Pods matching `selector` that `keep` accepts, by name.
    async fn pods_where(
        &self,
        selector: &str,
        keep: impl Fn(&Pod) -> bool,
    ) -> Result<Vec<PodFact>, JigError> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(self.api_error(format!("list pods {selector}")))?;
        let mut out: Vec<PodFact> = pods
            .items
            .iter()
            .filter(|p| keep(p))
            .map(|p| pod_fact(p, self.family))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The EndpointSlices of `service`, as the verdict reads them.
    pub async fn slice_facts(&self, service: &str) -> Result<Vec<SliceFact>, JigError> {
        let slices = self
            .slices_api()
            .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}")))
            .await
            .map_err(self.api_error(format!("list EndpointSlices of Service {service}")))?;
        let mut out: Vec<SliceFact> = slices.items.iter().map(wait::slice_fact).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The harness's ready client pods, one per node.
    pub async fn client_pods(&self) -> Result<Vec<PodFact>, JigError> {
        let clients = self.in_namespace(self.clients.clone());
        clients.ready_pods(CLIENT_SELECTOR).await
    }

    /// Waits for one declared readiness, up to `deadline`; `Ok` says the
    /// state that held (evidence).
    pub async fn wait(
        &self,
        readiness: &Readiness,
        deadline: Duration,
    ) -> Result<String, WaitError> {
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
                    self.slices_api(),
                    slices_of(service),
                    format!("EndpointSlices of Service {service} in ns {ns}"),
                    deadline,
                    wait::endpoint_slices_ready(ready.on(self.size), ports),
                )
                .await
            }
            Readiness::Endpoints { service, ready } => {
                let pods = self.selected_pods(service).await?;
                wait::until_both(
                    (
                        Api::<Endpoints>::namespaced(self.client.clone(), ns),
                        named(service),
                    ),
                    pods,
                    format!("Endpoints of Service {service} in ns {ns}"),
                    deadline,
                    wait::endpoints_match_ready_pods(service, *ready, self.family),
                )
                .await
            }
            Readiness::EndpointSliceAddresses {
                service,
                ready,
                families,
            } => {
                let families = if families.is_empty() {
                    vec![self.family]
                } else {
                    self.families_ranked(families).await?
                };
                let pods = self.selected_pods(service).await?;
                wait::until_both(
                    (self.slices_api(), slices_of(service)),
                    pods,
                    format!("EndpointSlice addresses of Service {service} in ns {ns}"),
                    deadline,
                    wait::endpoint_slices_match_ready_pods(ready.on(self.size), families),
                )
                .await
            }
            Readiness::NoClusterIp(service) => {
                wait::until(
                    Api::<Service>::namespaced(self.client.clone(), ns),
                    Some(&format!("metadata.name={service}")),
                    format!("Service {service} in ns {ns}"),
                    deadline,
                    wait::service_without_cluster_ip(service),
                )
                .await
            }
            Readiness::NoEndpoints(service) => {
                wait::until_both(
                    (self.slices_api(), slices_of(service)),
                    (
                        Api::<Endpoints>::namespaced(self.client.clone(), ns),
                        named(service),
                    ),
                    format!("endpoints of Service {service} in ns {ns}"),
                    deadline,
                    wait::no_endpoints,
                )
                .await
            }
            Readiness::LoadBalancer(service) => {
                let waited = self.wait_ingress(service, deadline).await;
                self.with_service_events(service, waited).await
            }
            Readiness::LoadBalancerPending { service, witness } => {
                let waited = self.wait_ingress(witness, deadline).await;
                self.with_service_events(witness, waited).await?;
                // The implementation has served the witness, applied at the
                // same time; a few seconds more show it leaves `service` alone.
                match self.wait_ingress(service, PENDING_WINDOW).await {
                    Err(WaitError::Deadline { .. }) => Ok(format!(
                        "no EXTERNAL-IP {}s after {witness} got one",
                        PENDING_WINDOW.as_secs()
                    )),
                    Err(other) => Err(other),
                    Ok(_) => Err(WaitError::Unexpected {
                        what: format!("Service {service} in ns {ns}"),
                        status: format!(
                            "got an EXTERNAL-IP ({}), expected it to stay Pending: no \
                             implementation serves it (the Service {witness} got its address)",
                            self.ingress(service).await.unwrap_or_default()
                        ),
                    }),
                }
            }
            Readiness::ClusterIpFamilies { service, families } => {
                let want = self.families_ranked(families).await?;
                wait::until(
                    Api::<Service>::namespaced(self.client.clone(), ns),
                    Some(&format!("metadata.name={service}")),
                    format!("Service {service} in ns {ns}"),
                    deadline,
                    wait::service_ip_families(service, want),
                )
                .await
            }
            Readiness::IpAddresses(service) => {
                wait::until_both(
                    (
                        Api::<Service>::namespaced(self.client.clone(), ns),
                        named(service),
                    ),
                    (
                        Api::<IPAddress>::all(self.client.clone()),
                        watcher::Config::default(),
                    ),
                    format!("IPAddress objects of Service {service} in ns {ns}"),
                    deadline,
                    wait::service_ip_addresses(ns, service),
                )
                .await
            }
            Readiness::ReadyPods { selector, ready } => {
                wait::until_config(
                    Api::<Pod>::namespaced(self.client.clone(), ns),
                    watcher::Config::default().labels(selector),
                    format!("pods {selector} in ns {ns}"),
                    deadline,
                    wait::ready_pods(*ready),
                )
                .await
            }
            Readiness::TerminatingEndpoints {
                service,
                terminating,
            } => {
                wait::until_config(
                    self.slices_api(),
                    slices_of(service),
                    format!("EndpointSlices of Service {service} in ns {ns}"),
                    deadline,
                    wait::terminating_endpoints(*terminating),
                )
                .await
            }
            // Needs the cluster's mode and its nodes: the runner waits on it.
            Readiness::ProxyMode { .. } => Err(WaitError::Unexpected {
                what: "kube-proxy's mode".into(),
                status: "is waited on by the runner, not a case's jig".into(),
            }),
            Readiness::PodsGone {
                namespace,
                selector,
            } => {
                wait::until_config(
                    Api::<Pod>::namespaced(self.client.clone(), namespace),
                    watcher::Config::default().labels(selector),
                    format!("pods {selector} in ns {namespace}"),
                    deadline,
                    wait::no_pods,
                )
                .await
            }
        }
    }

    /// The families these ranks name on this cluster, in their order.
    async fn families_ranked(&self, ranks: &[FamilyRank]) -> Result<Vec<IpFamily>, WaitError> {
        let primary = self.primary_family().await?;
        Ok(ranks.iter().map(|r| r.of(primary)).collect())
    }

    /// The cluster's primary Service family: the first of `default/kubernetes`'s
    /// `spec.ipFamilies` (the API server's first Service range).
    async fn primary_family(&self) -> Result<IpFamily, WaitError> {
        let what = "Service default/kubernetes".to_string();
        let svc = Api::<Service>::namespaced(self.client.clone(), "default")
            .get("kubernetes")
            .await
            .map_err(|e| WaitError::Unusable {
                what: what.clone(),
                problem: format!("cannot read it for the cluster's primary family: {e}"),
            })?;
        let first = svc
            .spec
            .and_then(|s| s.ip_families)
            .and_then(|f| f.into_iter().next());
        first
            .as_deref()
            .and_then(IpFamily::from_kubernetes)
            .ok_or_else(|| WaitError::Unusable {
                what,
                problem: format!("no IP family in spec.ipFamilies ({first:?})"),
            })
    }

    async fn wait_ingress(&self, service: &str, deadline: Duration) -> Result<String, WaitError> {
        wait::until(
            Api::<Service>::namespaced(self.client.clone(), &self.namespace),
            Some(&format!("metadata.name={service}")),
            format!("Service {service} in ns {}", self.namespace),
            deadline,
            wait::load_balancer_ingress(service),
        )
        .await
    }

    /// `name address` of every Service in the namespace with an EXTERNAL-IP.
    async fn held_addresses(&self) -> String {
        let Ok(list) = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default())
            .await
        else {
            return String::new();
        };
        list.items
            .iter()
            .filter_map(|s| {
                let ingress = wait::ingress_addresses(s);
                (!ingress.is_empty())
                    .then(|| format!("Service {} {}", s.name_any(), ingress.join(",")))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The ingress addresses of a LoadBalancer Service, comma-separated
    /// (empty while it is Pending).
    pub async fn ingress(&self, service: &str) -> Result<String, JigError> {
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(service)
            .await
            .map_err(self.api_error(format!("get Service {service}")))?;
        Ok(wait::ingress_addresses(&svc).join(","))
    }

    /// A failed wait on a Service, with the Warning events about it (a
    /// load-balancer implementation says there why it assigned nothing:
    /// MetalLB names the exhausted pool).
    async fn with_service_events(
        &self,
        service: &str,
        waited: Result<String, WaitError>,
    ) -> Result<String, WaitError> {
        let Err(WaitError::Deadline {
            what,
            status,
            after,
        }) = waited
        else {
            return waited;
        };
        let events = Api::<Event>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=Service,involvedObject.name={service},type=Warning"
            )))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.reason.clone().unwrap_or_default(),
                            e.message.clone().unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut status = status;
        // MetalLB's own warning for an exhausted pool may not name it
        // (v0.15.2 says `["<nil>"] is not allowed in config`): say which pool
        // the Service asked for, and who holds addresses here.
        if let Ok(svc) = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(service)
            .await
        {
            let pool = svc
                .annotations()
                .iter()
                .find(|(k, _)| k.ends_with("/address-pool"))
                .map(|(_, v)| v.clone());
            if let Some(pool) = pool {
                status.push_str(&format!("; it asks for address pool {pool}"));
                let held = self.held_addresses().await;
                if !held.is_empty() {
                    status.push_str(&format!(", whose addresses went to: {held}"));
                }
            }
        }
        let mut distinct: Vec<&String> = Vec::new();
        for e in &events {
            if !distinct.contains(&e) {
                distinct.push(e);
            }
        }
        let status = match distinct.as_slice() {
            [] => format!("{status}; no warning events"),
            warnings => format!(
                "{status}; warnings: {}",
                warnings
                    .iter()
                    .map(|w| w.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
        };
        Err(WaitError::Deadline {
            what,
            status,
            after,
        })
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

/// The pod with its address in `family` (`status.podIPs`; `podIP` where
/// that list is missing).
fn pod_fact(pod: &Pod, family: IpFamily) -> PodFact {
    PodFact {
        name: pod.name_any(),
        ip: pod
            .status
            .as_ref()
            .and_then(|s| wait::pod_ip(s, family))
            .unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    }
}

impl Jig {
    /// What to watch for the pods `service` selects: its selector, read
    /// once, as a label selector.
    async fn selected_pods(&self, service: &str) -> Result<(Api<Pod>, watcher::Config), WaitError> {
        let what = format!("Service {service} in ns {}", self.namespace);
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(service)
            .await
            .map_err(|e| WaitError::Unusable {
                what: what.clone(),
                problem: format!("cannot read it: {e}"),
            })?;
        let selector = svc
            .spec
            .and_then(|s| s.selector)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WaitError::Unusable {
                what,
                problem: "has no selector, so no pods to compare its endpoints with".into(),
            })?;
        let labels = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        Ok((
            Api::<Pod>::namespaced(self.client.clone(), &self.namespace),
            watcher::Config::default().labels(&labels),
        ))
    }
}

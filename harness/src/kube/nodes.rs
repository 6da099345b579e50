//! Nodes and node-facing Service ports, for checks made from outside the
//! cluster (`${nodeIP:...}`, `${nodePort:...}`, `${healthCheckNodePort:...}`).

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::jig::Jig;

/// `(name, InternalIP)` of every node, in name order (nodes without an
/// InternalIP are left out).
pub async fn internal_ips(client: &Client) -> Result<Vec<(String, String)>, kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut out: Vec<(String, String)> = nodes
        .items
        .iter()
        .filter_map(|n| {
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .clone();
            Some((n.name_any(), ip))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Nodes ordinary pods can land on: no NoSchedule or NoExecute taint (kind's
/// control plane has one), in name order. Condition taints
/// (`node.kubernetes.io/not-ready`, ...) pass: they come and go, and a node
/// just turned Ready may still carry one.
pub async fn schedulable(client: &Client) -> Result<Vec<String>, kube::Error> {
    Ok(schedulable_nodes(client)
        .await?
        .iter()
        .map(|n| n.name_any())
        .collect())
}

/// The schedulable nodes themselves (see [`schedulable`]), in name order.
pub async fn schedulable_nodes(client: &Client) -> Result<Vec<Node>, kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut out: Vec<Node> = nodes
        .items
        .into_iter()
        .filter(|n| {
            !n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| {
                    t.iter().any(|t| {
                        t.effect != "PreferNoSchedule" && !t.key.starts_with("node.kubernetes.io/")
                    })
                })
        })
        .collect();
    out.sort_by_key(|n| n.name_any());
    Ok(out)
}

/// Every node's `topology.kubernetes.io/zone` label, by node name.
pub async fn zones(
    client: &Client,
) -> Result<std::collections::BTreeMap<String, Option<String>>, kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(nodes
        .items
        .iter()
        .map(|n| {
            let zone = n.labels().get("topology.kubernetes.io/zone").cloned();
            (n.name_any(), zone)
        })
        .collect())
}

/// Which node-facing port of a Service.
#[derive(Debug, Clone, Copy)]
pub enum ServicePort {
    /// The first port's `nodePort`.
    NodePort,
    /// `spec.healthCheckNodePort`.
    HealthCheck,
}

/// The port, as text for a template; the error names the Service and the
/// field that was not set.
pub async fn service_port(jig: &Jig, service: &str, which: ServicePort) -> Result<String, String> {
    let svc = Api::<Service>::namespaced(jig.client.clone(), &jig.namespace)
        .get(service)
        .await
        .map_err(|e| format!("get Service {service} in ns {}: {e}", jig.namespace))?;
    let spec = svc.spec.unwrap_or_default();
    let (port, field) = match which {
        ServicePort::NodePort => (
            spec.ports
                .as_ref()
                .and_then(|p| p.first())
                .and_then(|p| p.node_port),
            "spec.ports[0].nodePort",
        ),
        ServicePort::HealthCheck => (spec.health_check_node_port, "spec.healthCheckNodePort"),
    };
    port.map(|p| p.to_string())
        .ok_or_else(|| format!("Service {service} in ns {} has no {field}", jig.namespace))
}

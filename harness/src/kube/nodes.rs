//! Nodes and node-facing Service ports, for checks made from outside the
//! cluster (`${nodeIP:...}`, `${nodePort:...}`, `${healthCheckNodePort:...}`).

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::jig::Jig;
use crate::model::IpFamily;

/// `(name, InternalIP)` of every node, in name order: the InternalIP of
/// `family`, or the first one listed for `None` (nodes without one are
/// left out).
pub async fn internal_ips(
    client: &Client,
    family: Option<IpFamily>,
) -> Result<Vec<(String, String)>, kube::Error> {
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
                .find(|a| {
                    a.type_ == "InternalIP"
                        && family.is_none_or(|f| IpFamily::of(&a.address) == Some(f))
                })?
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

/// How many times a taint change is retried when the node changed under it
/// (the kubelet writes its node often).
const TAINT_ATTEMPTS: usize = 5;

/// Puts the taint `key` with `effect` on `node` (as `kubectl taint` does);
/// `Ok(false)` when it had one of that key already.
pub async fn add_taint(
    client: &Client,
    node: &str,
    key: &str,
    value: &str,
    effect: &str,
) -> Result<bool, kube::Error> {
    edit_taints(client, node, |taints| {
        if taints.iter().any(|t| t.key == key) {
            return false;
        }
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        });
        true
    })
    .await
}

/// The zone label kube-proxy routes trafficDistribution by.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Takes each zoned node's `topology.kubernetes.io/zone` off and puts the
/// same value back, so every kube-proxy hears its zone again; returns
/// `node=zone` per node. A restarted kube-proxy (v1.37.2) can miss it for
/// good: its NodeTopologyConfig handles the node informer's first Add
/// before the proxier is registered as its handler, keeps the labels, and
/// skips every later event as unchanged (cmd/kube-proxy/app/server.go,
/// pkg/proxy/config/config.go); its PreferSameZone rules then spread over
/// every zone.
pub async fn reannounce_zones(client: &Client) -> Result<Vec<String>, kube::Error> {
    let api = Api::<Node>::all(client.clone());
    let params = kube::api::PatchParams::default();
    let mut done = Vec::new();
    for node in api.list(&ListParams::default()).await?.items {
        let name = node.name_any();
        let Some(zone) = node.labels().get(ZONE_LABEL).cloned() else {
            continue;
        };
        for value in [
            serde_json::Value::Null,
            serde_json::Value::from(zone.clone()),
        ] {
            let patch = serde_json::json!({"metadata": {"labels": {ZONE_LABEL: value}}});
            api.patch(&name, &params, &kube::api::Patch::Merge(&patch))
                .await?;
        }
        done.push(format!("{name}={zone}"));
    }
    Ok(done)
}

/// Takes every taint `key` off `node`; `Ok(false)` when it had none.
pub async fn remove_taint(client: &Client, node: &str, key: &str) -> Result<bool, kube::Error> {
    edit_taints(client, node, |taints| {
        let before = taints.len();
        taints.retain(|t| t.key != key);
        taints.len() != before
    })
    .await
}

/// Reads `node`'s taints, lets `edit` change them (`true` when it did) and
/// writes them back guarded by the resourceVersion read, again on conflict.
async fn edit_taints(
    client: &Client,
    node: &str,
    edit: impl Fn(&mut Vec<k8s_openapi::api::core::v1::Taint>) -> bool,
) -> Result<bool, kube::Error> {
    let api = Api::<Node>::all(client.clone());
    let mut attempt = 1;
    loop {
        let current = api.get(node).await?;
        let mut taints = current
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !edit(&mut taints) {
            return Ok(false);
        }
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": current.resource_version()},
            "spec": {"taints": taints},
        });
        let params = kube::api::PatchParams::default();
        match api
            .patch(node, &params, &kube::api::Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < TAINT_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Whether `node` has a taint `key`.
pub async fn has_taint(client: &Client, node: &str, key: &str) -> Result<bool, kube::Error> {
    let node = Api::<Node>::all(client.clone()).get(node).await?;
    Ok(node
        .spec
        .and_then(|s| s.taints)
        .is_some_and(|t| t.iter().any(|t| t.key == key)))
}

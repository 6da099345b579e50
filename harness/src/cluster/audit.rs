//! What `svcconf audit` reads of a cluster ([`AuditFacts`]), read-only:
//! lists and gets, the proxies' logs and health through the API server,
//! and on a kind cluster of this host the nodes' rules through `docker`.
//! Each fact is read on its own, so a permission missing for one leaves
//! the others (and the checks that need only them) intact.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::dataplane::{self, Rules};
use super::error_chain;
use crate::model::{AuditFacts, EndpointsFacts, ProxyConfig, ServiceFacts, SliceFacts};

/// The endpoints controller's label on what it writes (v1.33+).
const ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
const ENDPOINTS_CONTROLLER: &str = "endpoint-controller";
const SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const MIRRORING_CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Reads every fact at once. `docker`: the nodes are kind containers of
/// this host (their rules read with `docker exec`); else rules are not
/// read (an exec in a pod is not a read).
pub async fn facts(client: &Client, docker: Option<&Path>) -> AuditFacts {
    let rules = docker.map_or(Rules::Unread, Rules::Docker);
    let (dataplane, proxy_config, services, slices, endpoints) = tokio::join!(
        dataplane::inventory(client, rules),
        proxy_config(client),
        services(client),
        slices(client),
        endpoints(client),
    );
    AuditFacts {
        dataplane: dataplane.map_err(|e| error_chain(&e)),
        proxy_config,
        services,
        slices,
        endpoints,
    }
}

/// ConfigMap kube-system/kube-proxy's `config.conf` (kubeadm's, kind's);
/// `None` where the cluster has none.
async fn proxy_config(client: &Client) -> Result<Option<ProxyConfig>, String> {
    let map = Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .get_opt("kube-proxy")
        .await
        .map_err(|e| error_chain(&e))?;
    let Some(text) = map.and_then(|m| m.data?.get("config.conf").cloned()) else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("ConfigMap kube-system/kube-proxy: config.conf is not YAML: {e}"))?;
    Ok(Some(ProxyConfig {
        mode: value
            .get("mode")
            .map(|m| m.as_str().unwrap_or_default().to_string()),
        localhost_node_ports: value
            .pointer("/iptables/localhostNodePorts")
            .and_then(serde_json::Value::as_bool),
    }))
}

/// Every `K` of the cluster (those `labels` selects); a refusal as the
/// permission it lacked.
async fn list_all<K>(client: &Client, labels: &str) -> Result<Vec<K>, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::all(client.clone())
        .list(&ListParams::default().labels(labels))
        .await
        .map(|l| l.items)
        .map_err(|e| error_chain(&e))
}

async fn services(client: &Client) -> Result<Vec<ServiceFacts>, String> {
    Ok(list_all::<Service>(client, "")
        .await?
        .iter()
        .map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            ServiceFacts {
                namespace: s.namespace().unwrap_or_default(),
                name: s.name_any(),
                type_: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
                headless: spec.cluster_ip.as_deref() == Some("None"),
                has_selector: spec.selector.as_ref().is_some_and(|m| !m.is_empty()),
                external_ips: spec.external_ips.clone().unwrap_or_default(),
                traffic_distribution: spec.traffic_distribution.clone(),
                #[allow(deprecated)]
                load_balancer_ip: spec.load_balancer_ip.clone(),
                annotations: s.annotations().keys().cloned().collect(),
                node_ports: spec
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| p.node_port)
                    .collect(),
            }
        })
        .collect())
}

/// The EndpointSlices the mirroring controller made from v1 Endpoints.
async fn slices(client: &Client) -> Result<Vec<SliceFacts>, String> {
    let selector = format!("{SLICE_MANAGED_BY}={MIRRORING_CONTROLLER}");
    Ok(list_all::<EndpointSlice>(client, &selector)
        .await?
        .iter()
        .map(|s| SliceFacts {
            namespace: s.namespace().unwrap_or_default(),
            service: s.labels().get(SERVICE_NAME).cloned().unwrap_or_default(),
        })
        .collect())
}

/// The v1 Endpoints the endpoints controller did not write.
async fn endpoints(client: &Client) -> Result<Vec<EndpointsFacts>, String> {
    let selector = format!("{ENDPOINTS_MANAGED_BY}!={ENDPOINTS_CONTROLLER}");
    Ok(list_all::<Endpoints>(client, &selector)
        .await?
        .iter()
        .map(|e| {
            let mut managers: Vec<String> = e
                .managed_fields()
                .iter()
                .filter_map(|f| f.manager.clone())
                .collect();
            managers.dedup();
            EndpointsFacts {
                namespace: e.namespace().unwrap_or_default(),
                name: e.name_any(),
                by_controller: e.labels().get(ENDPOINTS_MANAGED_BY).map(String::as_str)
                    == Some(ENDPOINTS_CONTROLLER),
                managers,
            }
        })
        .collect())
}

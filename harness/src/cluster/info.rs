//! Facts about a connected cluster (version, nodes, proxy mode) and the wait
//! for a fresh cluster to be usable.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client};

use super::kind::{Kind, KindError};
use crate::kube::wait::{self, WaitError};
use crate::model::{ClusterInfo, IpFamilies, IpFamily, ProxyMode};

/// Reads what the reports carry about the cluster: its version, its nodes
/// and who programs Services on each (`docker`: kind nodes are read
/// directly). The detected mode is the one every node shows; nodes that
/// disagree are in the dataplane, for the caller to refuse.
pub async fn describe_cluster(
    client: &Client,
    mode: ProxyMode,
    name: &str,
    provider: &str,
    docker: Option<&std::path::Path>,
) -> Result<ClusterInfo, kube::Error> {
    let version = client.apiserver_version().await?.git_version;
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let nodes = listed.len();
    let read = families_of(client, &listed).await?;
    let dataplane = super::dataplane::settled_inventory(client, docker).await?;
    // The nodes, not the ConfigMap: with no node running kube-proxy the
    // cluster's Services are another proxy's (or nobody's).
    let detected_mode = Some(match dataplane.describe_mode() {
        Some(mode) => mode,
        None => format!("{} ({})", ProxyMode::Other, dataplane.describe_proxies()),
    });
    Ok(ClusterInfo {
        mode,
        detected_mode,
        name: name.to_string(),
        provider: provider.to_string(),
        kubernetes_version: version,
        nodes,
        families: read.families(),
        service_range: read.service_range,
        dataplane: Some(dataplane),
    })
}

/// The IP families every node has an InternalIP of, IPv4 first: what the
/// cases can run in.
pub fn node_families(nodes: &[Node]) -> Vec<IpFamily> {
    let of_node = |n: &Node| -> Vec<IpFamily> {
        n.status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| IpFamily::of(&a.address))
            .collect()
    };
    [IpFamily::Ipv4, IpFamily::Ipv6]
        .into_iter()
        .filter(|f| !nodes.is_empty() && nodes.iter().all(|n| of_node(n).contains(f)))
        .collect()
}

/// What a cluster's IP families are read from: a case runs in a family only
/// where every node has an address of it and Services get addresses of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFamilies {
    /// The families every node has an InternalIP of.
    pub nodes: Vec<IpFamily>,
    /// The CIDRs of the default ServiceCIDR (`kubernetes`, made from the API
    /// server's `--service-cluster-ip-range`); `None` where the API serves
    /// none (before v1.33) or may not be read: the nodes alone decide.
    pub service_range: Option<Vec<String>>,
}

impl ClusterFamilies {
    /// The families cases can run in, IPv4 first.
    pub fn families(&self) -> Vec<IpFamily> {
        self.nodes
            .iter()
            .copied()
            .filter(|f| self.why_not(*f).is_none())
            .collect()
    }

    /// Why cases cannot run in `family` here (`None`: they can). Nodes with
    /// IPv6 addresses but an IPv4-only Service range make a cluster whose
    /// IPv6 Services the API refuses.
    pub fn why_not(&self, family: IpFamily) -> Option<String> {
        if !self.nodes.contains(&family) {
            return Some(format!(
                "the cluster's nodes have no {family} InternalIP (they have {})",
                IpFamilies::of(&self.nodes).map_or("none".to_string(), |f| f.to_string())
            ));
        }
        let cidrs = self.service_range.as_ref()?;
        let in_range = cidrs
            .iter()
            .filter_map(|c| c.split('/').next())
            .any(|a| IpFamily::of(a) == Some(family));
        (!in_range).then(|| {
            format!(
                "the cluster's Service range (ServiceCIDR kubernetes: {}) has no {family} CIDR, so it gives Services no {family} address",
                cidrs.join(", ")
            )
        })
    }
}

/// The default ServiceCIDR's CIDRs (see [`ClusterFamilies::service_range`]).
async fn service_range(client: &Client) -> Result<Option<Vec<String>>, kube::Error> {
    use k8s_openapi::api::networking::v1::ServiceCIDR;
    match Api::<ServiceCIDR>::all(client.clone())
        .get_opt("kubernetes")
        .await
    {
        Ok(found) => Ok(found.and_then(|s| s.spec).and_then(|s| s.cidrs)),
        // Not served by this API server, or not ours to read.
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the IP families of the cluster `client` reaches are read from.
pub async fn families(client: &Client) -> Result<ClusterFamilies, kube::Error> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    families_of(client, &nodes).await
}

/// The families of `nodes` (the cluster's, listed) and its Service range.
async fn families_of(client: &Client, nodes: &[Node]) -> Result<ClusterFamilies, kube::Error> {
    Ok(ClusterFamilies {
        nodes: node_families(nodes),
        service_range: service_range(client).await?,
    })
}

/// What the cluster offers cases: its nodes, the schedulable ones with
/// their zones, and room for pods on them (allocatable pods minus the pods
/// not finished there).
pub async fn capacity(
    client: &Client,
    name: &str,
    docker: bool,
    may_switch_mode: bool,
) -> Result<crate::needs::Capacity, kube::Error> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    let pods_api = Api::<Pod>::all(client.clone());
    let unfinished = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let (all, schedulable, pods) = tokio::join!(
        crate::kube::nodes::internal_ips(client, None),
        crate::kube::nodes::schedulable_nodes(client),
        pods_api.list(&unfinished)
    );
    let pods = pods?.items;
    // Unset, `--controllers` is `*` (the default set).
    let controllers = pods
        .iter()
        .find_map(|p| static_pod_flag(p, "kube-controller-manager", "controllers"))
        .map(|set| set.unwrap_or_else(|| "*".into()));
    let max_endpoints_per_slice = pods
        .iter()
        .find_map(|p| static_pod_flag(p, "kube-controller-manager", "max-endpoints-per-slice"))
        .flatten()
        .and_then(|n| n.parse().ok())
        .unwrap_or(crate::model::DEFAULT_MAX_ENDPOINTS_PER_SLICE);
    let apiserver_gates = pods
        .iter()
        .find_map(|p| static_pod_flag(p, "kube-apiserver", "feature-gates"))
        .flatten()
        .map(|flag| feature_gates(&flag))
        .unwrap_or_default();
    let mut running: std::collections::BTreeMap<String, u64> = Default::default();
    for pod in pods {
        if let Some(node) = pod.spec.and_then(|s| s.node_name) {
            *running.entry(node).or_default() += 1;
        }
    }
    let schedulable = schedulable?;
    let free_pods = schedulable
        .iter()
        .map(|n| {
            let allocatable = n
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get("pods"))
                .and_then(|q| q.0.parse::<u64>().ok())
                .unwrap_or(0);
            allocatable.saturating_sub(running.get(&n.name_any()).copied().unwrap_or(0))
        })
        .sum();
    Ok(crate::needs::Capacity {
        cluster: name.to_string(),
        nodes: all?.into_iter().map(|(name, _)| name).collect(),
        schedulable: schedulable
            .iter()
            .map(|n| {
                let zone = n.labels().get("topology.kubernetes.io/zone").cloned();
                (n.name_any(), zone)
            })
            .collect(),
        free_pods,
        docker,
        may_switch_mode,
        controllers,
        max_endpoints_per_slice,
        apiserver_gates,
    })
}

/// The last `--<flag>=` value of kube-system's static pod of `component`
/// (kubeadm labels it `component: <name>`): `Some(None)` when that pod does
/// not set the flag, `None` when `pod` is not that pod.
fn static_pod_flag(
    pod: &k8s_openapi::api::core::v1::Pod,
    component: &str,
    flag: &str,
) -> Option<Option<String>> {
    use kube::ResourceExt;
    let ours = pod.namespace().as_deref() == Some("kube-system")
        && pod.labels().get("component").map(String::as_str) == Some(component);
    if !ours {
        return None;
    }
    let container = pod.spec.as_ref()?.containers.first()?;
    let prefix = format!("--{flag}=");
    let value = container
        .command
        .iter()
        .chain(container.args.iter())
        .flatten()
        .filter_map(|f| f.strip_prefix(prefix.as_str()))
        .next_back()
        .map(String::from);
    Some(value)
}

/// `A=true,B=false` as a `--feature-gates` flag gives it; what does not
/// parse is left out (the component would not have started with it).
fn feature_gates(flag: &str) -> BTreeMap<String, bool> {
    flag.split(',')
        .filter_map(|g| {
            let (name, on) = g.trim().split_once('=')?;
            Some((name.to_string(), on.trim().parse().ok()?))
        })
        .collect()
}

/// The kind cluster a kubeconfig reached, if it is one: kind sets every
/// node's providerID to `kind://docker/<cluster>/<node>`.
pub async fn kind_cluster_name(client: &Client) -> Option<String> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .ok()?;
    let mut names = nodes.items.iter().map(|n| {
        n.spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|id| id.strip_prefix("kind://"))
            .and_then(|rest| rest.split('/').nth(1))
            .map(String::from)
    });
    let first = names.next()??;
    names
        .all(|n| n.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// The name of the kind cluster of this host that `client` reaches, if it
/// is one (its nodes say so and `kind get clusters` lists it): its nodes can
/// be loaded with local images, as a cluster svcconf made.
pub async fn local_kind_cluster(client: &Client, kind: &Kind) -> Result<Option<String>, KindError> {
    let Some(name) = kind_cluster_name(client).await else {
        return Ok(None);
    };
    Ok(kind.clusters().await?.contains(&name).then_some(name))
}

/// Whether `client` reaches a kind cluster of this host (`kind` found): an
/// unanswered `kind get clusters` says no.
pub async fn is_local_kind(client: &Client, kind: Option<&Kind>) -> bool {
    match kind {
        Some(kind) => matches!(local_kind_cluster(client, kind).await, Ok(Some(_))),
        None => false,
    }
}

/// What is wrong with the parts every case shares: CoreDNS without ready
/// endpoints, kube-proxy not ready on every node, the API server not
/// answering. Empty when all is well. A failed case names these, so a
/// routing failure that is really DNS being down says so.
pub async fn shared_problems(client: &Client) -> Vec<String> {
    let mut problems = Vec::new();
    let slices = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        "kube-system",
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpointslices",
        ),
    );
    let dns = ListParams::default().labels("kubernetes.io/service-name=kube-dns");
    match slices.list(&dns).await {
        Ok(list) => {
            let refs: Vec<&kube::api::DynamicObject> = list.items.iter().collect();
            if wait::ready_endpoints(&refs).0.is_empty() {
                problems
                    .push("CoreDNS has no ready endpoints (Service kube-system/kube-dns)".into());
            }
        }
        Err(e) => {
            problems.push(format!(
                "the API server did not answer a list of kube-system EndpointSlices: {e}"
            ));
            return problems;
        }
    }
    let proxies = Api::<DaemonSet>::namespaced(client.clone(), "kube-system");
    if let Ok(ds) = proxies.get("kube-proxy").await {
        let status = ds.status.unwrap_or_default();
        if status.number_ready < status.desired_number_scheduled {
            problems.push(format!(
                "kube-proxy is ready on {} of {} nodes",
                status.number_ready, status.desired_number_scheduled
            ));
        }
    }
    problems
}

/// Waits until `nodes` nodes are Ready, kube-proxy runs on each, and CoreDNS
/// is available: what cases need from a cluster.
pub async fn wait_cluster_ready(
    client: &Client,
    nodes: usize,
    deadline: Duration,
) -> Result<(), WaitError> {
    wait::until(
        Api::<Node>::all(client.clone()),
        None,
        format!("{nodes} nodes Ready"),
        deadline,
        wait::nodes_ready(nodes),
    )
    .await?;
    wait::until(
        Api::<DaemonSet>::namespaced(client.clone(), "kube-system"),
        Some("metadata.name=kube-proxy"),
        "DaemonSet kube-proxy in kube-system ready on every node".into(),
        deadline,
        wait::daemonset_ready("kube-proxy"),
    )
    .await?;
    wait::until(
        Api::<Deployment>::namespaced(client.clone(), "kube-system"),
        Some("metadata.name=coredns"),
        "Deployment coredns in kube-system available".into(),
        deadline,
        wait::deployment_available("coredns"),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_gates_are_read_as_the_flag_sets_them() {
        let gates = feature_gates("RelaxedServiceNameValidation=true, Foo=false,Bad=maybe,Empty");
        assert_eq!(
            gates,
            BTreeMap::from([
                ("Foo".to_string(), false),
                ("RelaxedServiceNameValidation".to_string(), true)
            ])
        );
    }

    #[test]
    fn a_family_is_the_nodes_and_the_service_ranges() {
        let of = |nodes: &[IpFamily], range: Option<&[&str]>| ClusterFamilies {
            nodes: nodes.to_vec(),
            service_range: range.map(|r| r.iter().map(|c| c.to_string()).collect()),
        };
        let (v4, v6) = (IpFamily::Ipv4, IpFamily::Ipv6);
        let dual = of(&[v4, v6], Some(&["10.96.0.0/16", "fd00:10:96::/112"]));
        assert_eq!(dual.families(), vec![v4, v6]);
        // Dual-stack nodes, an IPv4-only Service range: IPv6 Services are refused.
        let half = of(&[v4, v6], Some(&["10.96.0.0/16"]));
        assert_eq!(half.families(), vec![v4]);
        assert_eq!(
            half.why_not(v6).unwrap(),
            "the cluster's Service range (ServiceCIDR kubernetes: 10.96.0.0/16) has no ipv6 CIDR, so it gives Services no ipv6 address"
        );
        assert_eq!(
            of(&[v4], Some(&["10.96.0.0/16", "fd00:10:96::/112"]))
                .why_not(v6)
                .unwrap(),
            "the cluster's nodes have no ipv6 InternalIP (they have ipv4)"
        );
        // No ServiceCIDR API (before v1.33): the nodes alone.
        assert_eq!(of(&[v4, v6], None).families(), vec![v4, v6]);
        assert_eq!(of(&[], None).families(), vec![]);
    }
}

//! Reads the Service dataplane of every node ([`Dataplane`]): which proxy
//! runs there (kube-proxy found by its command in any DaemonSet, or a known
//! replacement's agent), the mode it reports, the rules the node holds, and
//! whether the proxy keeps them current (its `/healthz`, read through the
//! API server's pod proxy, so it works wherever the API server reaches the
//! nodes). Nodes are read at once; one node's silence costs its deadline,
//! never more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::join_all;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Service};
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, ResourceExt};

use super::command;
use crate::kube::{exec, wait};
use crate::model::{
    scaled, unprogrammed, Dataplane, NodeDataplane, ProxyHealth, ProxyMode, ServiceProxy,
};

/// One answer from a node (healthz, a rules dump): a silent proxy is named
/// after this, not waited on.
const NODE_DEADLINE: Duration = Duration::from_secs(3);
/// kube-proxy's defaults (`healthzBindAddress`, `metricsBindAddress`).
const HEALTHZ_PORT: u16 = 10256;
const METRICS_PORT: u16 = 10249;
/// The start of kube-proxy's log holds its mode line and start-up warnings.
const LOG_HEAD_BYTES: i64 = 256 * 1024;

/// Agents that program Services in place of kube-proxy, by DaemonSet name.
const REPLACEMENTS: [(&str, &str); 6] = [
    ("cilium", "Cilium"),
    ("calico-node", "Calico"),
    ("kube-router", "kube-router"),
    ("ovnkube-node", "OVN-Kubernetes"),
    ("antrea-agent", "Antrea"),
    ("kube-ovn-cni", "Kube-OVN"),
];

/// Where a node's rules are read from.
#[derive(Debug, Clone, Copy)]
pub enum Rules<'a> {
    /// `docker exec` into the node container (kind on this host).
    Docker(&'a Path),
    /// exec into the node's kube-proxy pod: it runs in the node's network
    /// namespace and its image carries `iptables-save` and `nft`.
    KubeProxyPod,
    /// Not read: only the mode kube-proxy logged counts.
    Unread,
}

impl<'a> Rules<'a> {
    /// On a kind node `docker exec`, elsewhere exec in the kube-proxy pod.
    pub fn from_docker(docker: Option<&'a Path>) -> Self {
        docker.map_or(Rules::KubeProxyPod, Rules::Docker)
    }
}

/// A DaemonSet that may program Services.
#[derive(Debug, Clone)]
struct ProxySet {
    namespace: String,
    name: String,
    /// `None`: kube-proxy itself; else the replacement's name.
    replacement: Option<&'static str>,
    selector: String,
    /// What its status says is still to come: pods not yet scheduled or not
    /// yet ready (`None`: every pod it wants is there and ready).
    rolling_out: Option<String>,
}

impl ProxySet {
    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A proxy pod, placed on its node.
#[derive(Debug, Clone)]
struct ProxyPod {
    set: ProxySet,
    pod: Pod,
}

/// The dataplane of every node. `rules`: kind nodes are read with `docker
/// exec` (a node without a proxy pod is still read); elsewhere rules are
/// read in the node's kube-proxy pod, which runs in the node's network
/// namespace; or not at all (a read-only look: no exec).
pub async fn inventory(client: &Client, rules: Rules<'_>) -> Result<Dataplane, kube::Error> {
    let started = Instant::now();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let sets = proxy_sets(client).await?;
    let mut on_node: BTreeMap<String, Vec<ProxyPod>> = BTreeMap::new();
    let lists = sets.iter().map(|set| async move {
        let pods = Api::<Pod>::namespaced(client.clone(), &set.namespace)
            .list(&ListParams::default().labels(&set.selector))
            .await?;
        Ok::<_, kube::Error>((set.clone(), pods.items))
    });
    for listed in join_all(lists).await {
        let (set, pods) = listed?;
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            on_node.entry(node).or_default().push(ProxyPod {
                set: set.clone(),
                pod,
            });
        }
    }
    let ports = configured_ports(client).await;
    let mut names: Vec<String> = nodes.items.iter().map(|n| n.name_any()).collect();
    names.sort();
    let reads = names.iter().map(|node| {
        let pods = on_node.get(node).cloned().unwrap_or_default();
        read_node(client, rules, node, pods, ports)
    });
    let (mut nodes, mut events) = tokio::join!(join_all(reads), node_notices(client));
    for node in &mut nodes {
        for (reason, message) in events.remove(&node.node).unwrap_or_default() {
            // The log said it already, unless it has rotated since.
            if !node.warnings.iter().any(|w| w.contains(&message)) {
                node.warnings.push(format!("event {reason}: {message}"));
            }
        }
    }
    Ok(Dataplane {
        nodes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The notices kube-proxy records as events on its node at start
/// (`IPVSDeprecation` since v1.35, `KubeProxyDefaultMode` when it took
/// iptables by default), by node. Events expire (an hour by default), and
/// a role that may not list them gets none: the log is read too.
async fn node_notices(client: &Client) -> BTreeMap<String, Vec<(String, String)>> {
    let events = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields("involvedObject.kind=Node"))
        .await;
    let mut by_node: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for event in events.map(|list| list.items).unwrap_or_default() {
        let reason = event.reason.unwrap_or_default();
        if !matches!(reason.as_str(), "IPVSDeprecation" | "KubeProxyDefaultMode") {
            continue;
        }
        let (Some(node), Some(message)) = (event.involved_object.name, event.message) else {
            continue;
        };
        let notices = by_node.entry(node).or_default();
        if !notices.iter().any(|(_, m)| *m == message) {
            notices.push((reason, message));
        }
    }
    by_node
}

/// How long a proxy that does not answer or has not synced is read again
/// before that is taken as its state: kubeadm's kube-proxy has no readiness
/// probe, so a fresh cluster's DaemonSet is ready before `/healthz` listens.
const PROXY_SETTLE: Duration = Duration::from_secs(10);

/// How long a proxy DaemonSet whose pods are not all scheduled and ready is
/// waited for: a cluster used the moment `kind create` returns has nodes
/// whose kube-proxy pod does not exist yet, and those would read as nodes
/// with no proxy (the run named mode `other`). A proxy that stays unready
/// past this is reported as it is.
const PROXY_ROLLOUT: Duration = Duration::from_secs(120);

/// The nodes' dataplane, read again each second while a proxy DaemonSet is
/// rolling out (see [`PROXY_ROLLOUT`]) or a proxy is starting (see
/// [`PROXY_SETTLE`]); what is left after that is reported as it is.
pub async fn settled_inventory(
    client: &Client,
    docker: Option<&Path>,
) -> Result<Dataplane, kube::Error> {
    let rules = || Rules::from_docker(docker);
    let rollout_deadline = tokio::time::Instant::now() + scaled(PROXY_ROLLOUT);
    loop {
        let rolling = proxies_rolling_out(client).await?;
        if rolling.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= rollout_deadline {
            tracing::warn!(
                "proxy DaemonSets still rolling out after {}s, reading the nodes as they are: {}",
                scaled(PROXY_ROLLOUT).as_secs(),
                rolling.join("; ")
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let deadline = tokio::time::Instant::now() + scaled(PROXY_SETTLE);
    let mut dataplane = inventory(client, rules()).await?;
    while dataplane.starting() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        dataplane = inventory(client, rules()).await?;
    }
    Ok(dataplane)
}

/// The mode every node of the cluster runs, read on each node (`other`
/// when none runs kube-proxy); nodes in different modes, or a mode svcconf
/// does not know, are the error.
pub async fn cluster_mode(client: &Client, docker: Option<&Path>) -> Result<ProxyMode, String> {
    let dataplane = settled_inventory(client, docker).await.map_err(|e| {
        format!(
            "cannot read the cluster's nodes and proxies: {}",
            super::error_chain(&e)
        )
    })?;
    match dataplane.cluster_mode()? {
        None => Ok(ProxyMode::Other),
        Some(mode) => mode
            .parse()
            .map_err(|_| format!("kube-proxy runs in {mode} mode, which svcconf does not check")),
    }
}

/// What the case's Services in `namespace` lack on the `involved` nodes
/// while other nodes' rules hold them: each address of theirs (ClusterIPs,
/// externalIPs, LoadBalancer addresses) looked for in every node's rules of
/// any mode. Nodes whose rules cannot be read are left out, never guessed.
pub async fn unprogrammed_services(
    client: &Client,
    docker: Option<&Path>,
    dataplane: &Dataplane,
    namespace: &str,
    involved: &BTreeSet<String>,
) -> Vec<String> {
    let listed = Api::<Service>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await;
    let Ok(listed) = listed else {
        return Vec::new();
    };
    let services: Vec<(String, Vec<String>)> = listed
        .items
        .iter()
        .map(|svc| (svc.name_any(), service_addresses(svc)))
        .filter(|(_, addresses)| !addresses.is_empty())
        .collect();
    if services.is_empty() {
        return Vec::new();
    }
    let reads = dataplane.nodes.iter().map(|node| async move {
        let read = |args: &'static [&'static str]| read_on(client, docker, node, args);
        // Everything a mode may hold a Service address in: iptables' nat and
        // filter tables (a Service without endpoints is a filter rule), all
        // nftables tables, ipvs's dummy interface.
        let (saved, ruleset, ipvs) = tokio::join!(
            read(&["iptables-save"]),
            read(&["nft", "list", "ruleset"]),
            read(&["ip", "-o", "addr", "show", "dev", "kube-ipvs0"]),
        );
        let dump = [saved, ruleset, ipvs]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        (
            node.node.clone(),
            (!dump.is_empty()).then(|| dump.join("\n")),
        )
    });
    let dumps: BTreeMap<String, Option<String>> = join_all(reads).await.into_iter().collect();
    unprogrammed(namespace, &services, &dumps, involved)
}

/// A Service's addresses a proxy programs; none for headless and ExternalName.
fn service_addresses(svc: &Service) -> Vec<String> {
    let spec = svc.spec.as_ref();
    let cluster = spec
        .and_then(|s| {
            s.cluster_ips
                .clone()
                .or_else(|| s.cluster_ip.clone().map(|ip| vec![ip]))
        })
        .unwrap_or_default();
    let external = spec
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default();
    // A host name among them is never in a node's rules: nothing is said of it.
    cluster
        .into_iter()
        .chain(external)
        .chain(wait::ingress_addresses(svc))
        .filter(|ip| !ip.is_empty() && ip != "None")
        .collect()
}

/// `args` run on `node`: by `docker exec` on kind, else in its kube-proxy pod.
async fn read_on(
    client: &Client,
    docker: Option<&Path>,
    node: &NodeDataplane,
    args: &'static [&'static str],
) -> Option<String> {
    if let Some(docker) = docker {
        return docker_read(docker, &node.node, args).await;
    }
    let ServiceProxy::KubeProxy { daemon_set, pod } = &node.proxy else {
        return None;
    };
    let (ns, _) = daemon_set.split_once('/')?;
    pod_read(client, ns, pod, args).await
}

/// Every DaemonSet whose pods run kube-proxy (its image or command names
/// it), and every known replacement's agent.
async fn proxy_sets(client: &Client) -> Result<Vec<ProxySet>, kube::Error> {
    let all = Api::<DaemonSet>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut out = Vec::new();
    for ds in &all.items {
        let name = ds.name_any();
        let spec = ds.spec.as_ref();
        let containers = spec
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers.as_slice())
            .unwrap_or_default();
        let runs_kube_proxy = containers.iter().any(|c| {
            let words = c
                .command
                .iter()
                .flatten()
                .chain(c.args.iter().flatten())
                .chain(c.image.iter());
            words.into_iter().any(|w| w.contains("kube-proxy"))
        });
        let replacement = REPLACEMENTS
            .iter()
            .find(|(ds_name, _)| name == *ds_name)
            .map(|(_, label)| *label);
        if !runs_kube_proxy && replacement.is_none() {
            continue;
        }
        let Some(selector) = spec.and_then(|s| s.selector.match_labels.as_ref()) else {
            continue;
        };
        let selector = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        out.push(ProxySet {
            namespace: ds.namespace().unwrap_or_default(),
            name,
            replacement: if runs_kube_proxy { None } else { replacement },
            selector,
            rolling_out: rollout_shortfall(ds),
        });
    }
    Ok(out)
}

/// What a DaemonSet's status says it has not done yet: a controller that
/// has not seen its spec, pods not scheduled, pods not ready.
fn rollout_shortfall(ds: &DaemonSet) -> Option<String> {
    let Some(status) = ds.status.as_ref() else {
        return Some("no status yet".into());
    };
    if status.observed_generation < ds.metadata.generation {
        return Some("its controller has not seen its spec yet".into());
    }
    let desired = status.desired_number_scheduled;
    if status.current_number_scheduled < desired {
        return Some(format!(
            "{} of {desired} pods scheduled",
            status.current_number_scheduled
        ));
    }
    (status.number_ready < desired)
        .then(|| format!("{} of {desired} pods ready", status.number_ready))
}

/// The proxy DaemonSets whose pods are still coming, each with what is
/// missing (`kube-system/kube-proxy: 1 of 3 pods ready`): right after a
/// cluster is made, a node without its proxy pod is not yet a node without
/// a proxy.
async fn proxies_rolling_out(client: &Client) -> Result<Vec<String>, kube::Error> {
    Ok(proxy_sets(client)
        .await?
        .into_iter()
        .filter_map(|set| Some(format!("{}: {}", set.id(), set.rolling_out.as_ref()?)))
        .collect())
}

/// kube-proxy's healthz and metrics ports, from kube-system's `kube-proxy`
/// ConfigMap where it sets them, else its defaults.
async fn configured_ports(client: &Client) -> (u16, u16) {
    let config = Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .get_opt("kube-proxy")
        .await
        .ok()
        .flatten()
        .and_then(|m| m.data?.get("config.conf").cloned())
        .unwrap_or_default();
    let value: serde_json::Value = serde_saphyr::from_str(&config).unwrap_or_default();
    let port = |field: &str, default: u16| {
        value
            .get(field)
            .and_then(|v| v.as_str())
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(default)
    };
    (
        port("healthzBindAddress", HEALTHZ_PORT),
        port("metricsBindAddress", METRICS_PORT),
    )
}

async fn read_node(
    client: &Client,
    rules: Rules<'_>,
    node: &str,
    pods: Vec<ProxyPod>,
    (healthz_port, metrics_port): (u16, u16),
) -> NodeDataplane {
    let kube_proxy = pods.iter().find(|p| p.set.replacement.is_none());
    let agent = kube_proxy.or_else(|| pods.first());
    let rules_pod = kube_proxy.map(|p| (p.set.namespace.as_str(), p.pod.name_any()));
    let programmed = async {
        match (rules, &rules_pod) {
            (Rules::Docker(docker), _) => {
                programmed_modes(|args| docker_read(docker, node, args)).await
            }
            (Rules::KubeProxyPod, Some((ns, pod))) => {
                programmed_modes(|args| pod_read(client, ns, pod, args)).await
            }
            _ => None,
        }
    };
    let Some(agent) = agent else {
        let programmed = programmed.await;
        let any_rules = programmed.as_ref().is_some_and(|m| !m.is_empty());
        return NodeDataplane {
            node: node.to_string(),
            // Rules with nothing known behind them: an unknown proxy, or left over.
            proxy: if any_rules {
                ServiceProxy::Unknown
            } else {
                ServiceProxy::None
            },
            mode: None,
            programmed,
            health: ProxyHealth::Unknown {
                detail: "no proxy pod on the node to ask".into(),
            },
            warnings: Vec::new(),
        };
    };
    let pod = agent.pod.name_any();
    let ns = agent.set.namespace.clone();
    let proxy = match agent.set.replacement {
        None => ServiceProxy::KubeProxy {
            daemon_set: agent.set.id(),
            pod: pod.clone(),
        },
        Some(name) => ServiceProxy::Replacement {
            name: name.to_string(),
            daemon_set: agent.set.id(),
            pod: pod.clone(),
        },
    };
    if agent.set.replacement.is_some() {
        return NodeDataplane {
            node: node.to_string(),
            proxy,
            mode: None,
            programmed: programmed.await,
            health: not_running(&agent.pod).unwrap_or(ProxyHealth::Unknown {
                detail: "svcconf reads the health of kube-proxy only".into(),
            }),
            warnings: Vec::new(),
        };
    }
    let (programmed, health, reported, log) = tokio::join!(
        programmed,
        health(client, &ns, &pod, healthz_port),
        pod_get(client, &ns, &pod, metrics_port, "/proxyMode"),
        log_head(client, &ns, &pod),
    );
    let mode = reported
        .ok()
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty() && !m.contains(' '))
        .or_else(|| mode_from_log(&log));
    NodeDataplane {
        node: node.to_string(),
        proxy,
        mode,
        programmed,
        health: not_running(&agent.pod).unwrap_or(health),
        warnings: warnings_in(&log),
    }
}

/// A pod that is not running, or not ready, named with why.
fn not_running(pod: &Pod) -> Option<ProxyHealth> {
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    let waiting = statuses.iter().find_map(|c| {
        let reason = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
        Some(format!("{reason}, {} restarts", c.restart_count))
    });
    let ready = !statuses.is_empty() && statuses.iter().all(|c| c.ready);
    let pod = pod.name_any();
    match (phase, waiting, ready) {
        (_, Some(reason), _) => Some(ProxyHealth::NotRunning {
            detail: format!("pod {pod} {reason}"),
        }),
        ("Running", None, true) => None,
        (phase, None, _) => Some(ProxyHealth::NotRunning {
            detail: format!("pod {pod} is {phase}, not ready"),
        }),
    }
}

/// `GET /healthz` of kube-proxy: 200 synced, 503 stale (with its clock's
/// `lastUpdated` and `currentTime`), silence: not answering.
async fn health(client: &Client, ns: &str, pod: &str, port: u16) -> ProxyHealth {
    let answer = pod_proxy(client, ns, pod, port, "/healthz").await;
    match answer {
        Ok((status, body)) => health_of(status, &body, ns, pod, port),
        Err(detail) => ProxyHealth::NotAnswering { detail },
    }
}

/// What a `/healthz` answer (`status`, `body`) through the pod proxy says.
fn health_of(status: u16, body: &str, ns: &str, pod: &str, port: u16) -> ProxyHealth {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    // The API server answering for itself: it may not ask (RBAC), or it
    // could not reach the proxy (nothing listens there).
    if status == 403 {
        return ProxyHealth::Unknown {
            detail: format!("svcconf may not ask (needs get on pods/proxy in {ns})"),
        };
    }
    if value.get("kind").and_then(|k| k.as_str()) == Some("Status") {
        let message = value.get("message").and_then(|m| m.as_str()).unwrap_or("");
        return ProxyHealth::NotAnswering {
            detail: format!("GET /healthz on {pod}:{port}: {status} {message}"),
        };
    }
    let (last, now) = sync_times(&value);
    let age = match (&last, &now) {
        (Some(l), Some(n)) => seconds_between(l, n),
        _ => None,
    };
    match (status, age) {
        (200, Some(age)) => ProxyHealth::Synced {
            last_sync_seconds: age,
        },
        (200, None) => ProxyHealth::Synced {
            last_sync_seconds: 0.0,
        },
        (503, _) => ProxyHealth::Stale {
            seconds: age.unwrap_or(0.0),
            detail: format!(
                "healthz 503, lastUpdated {}, currentTime {}",
                last.as_deref().unwrap_or("?"),
                now.as_deref().unwrap_or("?")
            ),
        },
        (code, _) => ProxyHealth::Unknown {
            detail: format!("healthz answered {code}: {}", body.trim()),
        },
    }
}

/// The oldest last sync and the proxy's clock from a `/healthz` answer.
/// Per IP family where it says (`status.IPv4.lastUpdated`, v1.3x): the
/// top-level `lastUpdated` reads as "now" on a proxy with nothing pending.
fn sync_times(healthz: &serde_json::Value) -> (Option<String>, Option<String>) {
    let text = |v: &serde_json::Value| v.as_str().map(String::from);
    let now = healthz.get("currentTime").and_then(text);
    let families = healthz
        .get("status")
        .and_then(|s| s.as_object())
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|f| f.get("lastUpdated").and_then(text));
    let last = families
        .min()
        .or_else(|| healthz.get("lastUpdated").and_then(text));
    (last, now)
}

fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let from: k8s_openapi::jiff::Timestamp = from.parse().ok()?;
    let to: k8s_openapi::jiff::Timestamp = to.parse().ok()?;
    let span = to.duration_since(from);
    Some(span.as_secs_f64().max(0.0))
}

/// A 2xx body of `path` on the pod's `port`, else why not.
async fn pod_get(
    client: &Client,
    ns: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    match pod_proxy(client, ns, pod, port, path).await? {
        (200..=299, body) => Ok(body),
        (code, body) => Err(format!("{path} answered {code}: {}", body.trim())),
    }
}

/// `GET` through the API server's pod proxy (`pods/proxy`): status and body,
/// within [`NODE_DEADLINE`].
async fn pod_proxy(
    client: &Client,
    ns: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<(u16, String), String> {
    let uri = format!("/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}");
    let request = http::Request::get(&uri)
        .body(kube::client::Body::empty())
        .map_err(|e| e.to_string())?;
    let call = async {
        let response = client.send(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match tokio::time::timeout(scaled(NODE_DEADLINE), call).await {
        Ok(answer) => answer.map_err(|e| format!("GET {path} on {pod}:{port}: {e}")),
        Err(_) => Err(format!(
            "GET {path} on {pod}:{port} got no answer within {}s",
            scaled(NODE_DEADLINE).as_secs()
        )),
    }
}

/// The first [`LOG_HEAD_BYTES`] of the pod's log (empty when unreadable).
async fn log_head(client: &Client, ns: &str, pod: &str) -> String {
    let params = LogParams {
        limit_bytes: Some(LOG_HEAD_BYTES),
        ..LogParams::default()
    };
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let read = pods.logs(pod, &params);
    match tokio::time::timeout(scaled(NODE_DEADLINE), read).await {
        Ok(Ok(log)) => log,
        _ => String::new(),
    }
}

/// The modes whose Service rules a node holds, read with `read(argv)`
/// (`None` when nothing could be read): nftables by its `kube-proxy`
/// table; ipvs by the `KUBE-CLUSTER-IP` set its iptables rules match;
/// iptables by per-Service `KUBE-SVC-` chains (ipvs makes none).
async fn programmed_modes<F, Fut>(read: F) -> Option<Vec<String>>
where
    F: Fn(&'static [&'static str]) -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let (tables, saved) = tokio::join!(
        read(&["nft", "list", "tables"]),
        read(&["iptables-save", "-t", "nat"])
    );
    if tables.is_none() && saved.is_none() {
        return None;
    }
    Some(modes_in(
        tables.as_deref().unwrap_or_default(),
        saved.as_deref().unwrap_or_default(),
    ))
}

fn modes_in(tables: &str, saved: &str) -> Vec<String> {
    let mut modes = Vec::new();
    if saved.lines().any(|l| l.starts_with("-A KUBE-SVC-")) {
        modes.push("iptables".to_string());
    }
    let nft = tables
        .lines()
        .any(|l| matches!(l.trim(), "table ip kube-proxy" | "table ip6 kube-proxy"));
    if nft {
        modes.push("nftables".to_string());
    }
    if saved.contains("KUBE-CLUSTER-IP") {
        modes.push("ipvs".to_string());
    }
    modes
}

async fn docker_read(docker: &Path, node: &str, args: &[&str]) -> Option<String> {
    let all = [&["exec", node][..], args].concat();
    command::run(docker, &all, scaled(NODE_DEADLINE)).await.ok()
}

async fn pod_read(client: &Client, ns: &str, pod: &str, args: &[&str]) -> Option<String> {
    let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = exec::exec(client, ns, pod, &argv, scaled(NODE_DEADLINE))
        .await
        .ok()?;
    (out.status == "Success").then_some(out.stdout)
}

/// `"Using nftables Proxier"` → `nftables`.
pub(crate) fn mode_from_log(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("Using ")? + "Using ".len()..];
        let (mode, tail) = rest.split_once(' ')?;
        tail.starts_with("Proxier")
            .then(|| mode.to_ascii_lowercase())
    })
}

/// kube-proxy's start-up warnings that matter before an upgrade: a
/// deprecated mode or flag, a default about to change. klog writes
/// warnings as `W<date> ...`; the quoted message is kept.
fn warnings_in(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let lower = line.to_ascii_lowercase();
        // kube-proxy logs its two notices of the moment (ipvs deprecated
        // since v1.35; iptables taken by default, nftables from v1.40) at
        // error level, beside the IPVSDeprecation and KubeProxyDefaultMode
        // events it records on the node; other notices are warnings.
        let notice = match line.chars().next() {
            Some('W') => ["deprecat", "default", "will be removed"]
                .iter()
                .any(|w| lower.contains(w)),
            Some('E') => lower.contains("has been deprecated") || lower.contains("defaulting to"),
            _ => false,
        };
        if !notice {
            continue;
        }
        let message = line
            .split_once("] ")
            .map_or(line, |(_, m)| m)
            .trim()
            .trim_matches('"')
            .to_string();
        if !out.contains(&message) {
            out.push(message);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_set_rolls_out_until_every_wanted_pod_is_ready() {
        use k8s_openapi::api::apps::v1::DaemonSetStatus;
        let ds = |generation: i64, status: Option<(i64, i32, i32, i32)>| DaemonSet {
            metadata: kube::api::ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            status: status.map(|(seen, desired, scheduled, ready)| DaemonSetStatus {
                observed_generation: Some(seen),
                desired_number_scheduled: desired,
                current_number_scheduled: scheduled,
                number_ready: ready,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(rollout_shortfall(&ds(1, None)).unwrap(), "no status yet");
        assert!(rollout_shortfall(&ds(2, Some((1, 3, 3, 3)))).is_some());
        assert_eq!(
            rollout_shortfall(&ds(1, Some((1, 3, 1, 1)))).unwrap(),
            "1 of 3 pods scheduled"
        );
        assert_eq!(
            rollout_shortfall(&ds(1, Some((1, 3, 3, 2)))).unwrap(),
            "2 of 3 pods ready"
        );
        assert_eq!(rollout_shortfall(&ds(1, Some((1, 3, 3, 3)))), None);
        // A DaemonSet that wants no pod (a nodeSelector nobody matches) is done.
        assert_eq!(rollout_shortfall(&ds(1, Some((1, 0, 0, 0)))), None);
    }

    #[test]
    fn rules_name_the_modes_a_node_holds() {
        let nft = "table ip filter\ntable ip kube-proxy\ntable ip6 kube-proxy\n";
        assert_eq!(modes_in(nft, ""), vec!["nftables"]);
        let ipt = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-NPX46M4PTMTKRN6Y\n-A KUBE-SVC-NPX46M4PTMTKRN6Y -j KUBE-SEP-X\n";
        assert_eq!(modes_in("table ip nat\n", ipt), vec!["iptables"]);
        let ipvs =
            "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ\n";
        assert_eq!(modes_in("", ipvs), vec!["ipvs"]);
        // A switch half done: both.
        assert_eq!(modes_in(nft, ipt), vec!["iptables", "nftables"]);
        assert!(modes_in("table ip filter\n", ":KUBE-SERVICES - [0:0]\n").is_empty());
    }

    #[test]
    fn reads_the_mode_and_the_warnings_kube_proxy_logged() {
        let log = "I1204 10:00:00.1 1 server_linux.go:66] \"Using nftables Proxier\"\n\
                   W1204 10:00:00.2 1 server.go:100] \"The ipvs proxier is deprecated and will be removed\"\n\
                   W1204 10:00:00.3 1 server.go:101] \"Kube-proxy configuration may be incomplete\"\n\
                   E1204 10:00:00.4 1 server_linux.go:193] \"The ipvs proxier has been deprecated and will be disabled by default in Kubernetes 1.40 and removed in Kubernetes 1.43. Migrate to the 'nftables' proxier instead.\"\n\
                   E1204 10:00:00.5 1 proxier.go:900] \"Failed to sync\"\n";
        assert_eq!(mode_from_log(log).as_deref(), Some("nftables"));
        assert_eq!(
            warnings_in(log),
            vec![
                "The ipvs proxier is deprecated and will be removed".to_string(),
                "The ipvs proxier has been deprecated and will be disabled by default in Kubernetes 1.40 and removed in Kubernetes 1.43. Migrate to the 'nftables' proxier instead.".to_string()
            ]
        );
        assert_eq!(mode_from_log("Using config file"), None);
    }

    #[test]
    fn the_last_sync_is_the_oldest_familys() {
        let answer = serde_json::json!({
            "lastUpdated": "2026-12-04T18:42:35.833Z", "currentTime": "2026-12-04T18:42:35.833Z",
            "status": {"IPv4": {"lastUpdated": "2026-12-04T18:42:18.769Z", "healthy": true},
                       "IPv6": {"lastUpdated": "2026-12-04T18:42:20Z", "healthy": true}}
        });
        assert_eq!(
            sync_times(&answer),
            (
                Some("2026-12-04T18:42:18.769Z".into()),
                Some("2026-12-04T18:42:35.833Z".into())
            )
        );
        let old = serde_json::json!({"lastUpdated": "a", "currentTime": "b"});
        assert_eq!(sync_times(&old), (Some("a".into()), Some("b".into())));
    }

    #[test]
    fn a_healthz_answer_says_synced_stale_or_who_answered() {
        let ok = r#"{"lastUpdated":"2026-12-04T10:00:05Z","currentTime":"2026-12-04T10:00:05Z","status":{"IPv4":{"lastUpdated":"2026-12-04T10:00:00Z"}}}"#;
        assert_eq!(
            health_of(200, ok, "kube-system", "p", 10256),
            ProxyHealth::Synced {
                last_sync_seconds: 5.0
            }
        );
        let stale =
            r#"{"lastUpdated":"2026-12-04T10:00:00Z","currentTime":"2026-12-04T10:01:35Z"}"#;
        assert!(matches!(
            health_of(503, stale, "kube-system", "p", 10256),
            ProxyHealth::Stale { seconds, .. } if seconds == 95.0
        ));
        assert!(matches!(
            health_of(403, "{}", "kube-system", "p", 10256),
            ProxyHealth::Unknown { detail } if detail.contains("pods/proxy")
        ));
        let refused = r#"{"kind":"Status","message":"error trying to reach service: dial tcp 172.18.0.4:10256: connect: connection refused"}"#;
        assert!(matches!(
            health_of(503, refused, "kube-system", "p", 10256),
            ProxyHealth::NotAnswering { detail } if detail.contains("connection refused")
        ));
    }

    #[test]
    fn measures_the_proxys_own_clock() {
        assert_eq!(
            seconds_between("2026-12-04T10:00:00.5Z", "2026-12-04T10:01:35.5Z"),
            Some(95.0)
        );
        assert_eq!(seconds_between("never", "2026-12-04T10:01:35Z"), None);
    }
}

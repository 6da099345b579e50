//! Who programs Services on each node, and how well: the cluster's
//! dataplane as its nodes show it (the rules they hold, their proxy's
//! health), not as one pod's log says it. Pure: `cluster::dataplane` reads
//! it, reporters print it, the runner names a broken node with it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The Service dataplane of every node, taken at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataplane {
    pub nodes: Vec<NodeDataplane>,
    /// What reading it cost.
    pub seconds: f64,
}

/// One node's Service proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDataplane {
    pub node: String,
    pub proxy: ServiceProxy,
    /// The mode the node's proxy runs (`iptables`, `nftables`, `ipvs`), from
    /// its own report (kube-proxy's `/proxyMode`, else its start-up log);
    /// `None` when nothing says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The modes whose Service rules the node holds (its `KUBE-SERVICES`
    /// chain, its nftables `kube-proxy` table, its `kube-ipvs0` device); `None`
    /// when they could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed: Option<Vec<String>>,
    pub health: ProxyHealth,
    /// What the proxy itself warns of that matters now (a deprecated mode,
    /// a default that changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What programs Services on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind"
)]
pub enum ServiceProxy {
    /// kube-proxy, found by its command in any DaemonSet (not only
    /// `kube-system/kube-proxy`).
    KubeProxy { daemon_set: String, pod: String },
    /// A known kube-proxy replacement's agent runs on the node and no
    /// kube-proxy does (Cilium, Calico, kube-router, OVN-Kubernetes, Antrea).
    Replacement {
        name: String,
        daemon_set: String,
        pod: String,
    },
    /// No known proxy runs there, but the node holds Service rules: an
    /// unknown proxy keeps them, or they are left over.
    Unknown,
    /// Nothing: no proxy pod, no rules seen.
    None,
}

impl fmt::Display for ServiceProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceProxy::KubeProxy { daemon_set, pod } => {
                write!(f, "kube-proxy (DaemonSet {daemon_set}, pod {pod})")
            }
            ServiceProxy::Replacement {
                name,
                daemon_set,
                pod,
            } => write!(f, "{name} (DaemonSet {daemon_set}, pod {pod})"),
            ServiceProxy::Unknown => f.write_str("an unknown Service proxy"),
            ServiceProxy::None => f.write_str("no Service proxy"),
        }
    }
}

/// Whether a node's proxy keeps its rules current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "state"
)]
pub enum ProxyHealth {
    /// `/healthz` answered 200; the last sync was this long ago.
    Synced { last_sync_seconds: f64 },
    /// `/healthz` answered 503: updates are queued and not programmed.
    Stale {
        /// Since the last sync, by the proxy's own clock.
        seconds: f64,
        detail: String,
    },
    /// The proxy's pod is not running or not ready (crash-looping, stopped).
    NotRunning { detail: String },
    /// `/healthz` did not answer: the process is stopped or wedged.
    NotAnswering { detail: String },
    /// Not known: no proxy to ask, or nothing that reads its health.
    Unknown { detail: String },
}

impl NodeDataplane {
    /// Why this node's Services may not be programmed as the API says, in
    /// one line naming the node; `None` when its proxy is synced.
    pub fn problem(&self) -> Option<String> {
        let node = &self.node;
        let who = match &self.proxy {
            ServiceProxy::KubeProxy { .. } => "kube-proxy".to_string(),
            ServiceProxy::Replacement { name, .. } => name.clone(),
            ServiceProxy::None => {
                return Some(format!(
                    "no Service proxy runs on {node} (no kube-proxy pod, no known replacement, no Service rules)"
                ))
            }
            ServiceProxy::Unknown => {
                let modes = self.programmed.clone().unwrap_or_default().join(" and ");
                return Some(format!(
                    "no kube-proxy or known replacement runs on {node}: its {modes} rules are left over or kept by an unknown proxy"
                ));
            }
        };
        match &self.health {
            ProxyHealth::Synced { .. } | ProxyHealth::Unknown { .. } => None,
            ProxyHealth::Stale { seconds, detail } => Some(format!(
                "{who} on {node} has not synced for {seconds:.0}s ({detail})"
            )),
            ProxyHealth::NotRunning { detail } => Some(format!("{who} on {node} is not running: {detail}")),
            ProxyHealth::NotAnswering { detail } => Some(format!(
                "{who} on {node} does not answer its health check ({detail}): stopped or wedged, its rules are not kept current"
            )),
        }
    }

    /// One line for people: `node: kube-proxy nftables (DaemonSet ...),
    /// synced 2s ago`.
    pub fn describe(&self) -> String {
        let mode = self
            .mode
            .as_deref()
            .map(|m| format!(" {m}"))
            .unwrap_or_default();
        let proxy = match &self.proxy {
            ServiceProxy::KubeProxy { daemon_set, pod } => {
                format!("kube-proxy{mode} (DaemonSet {daemon_set}, pod {pod})")
            }
            ServiceProxy::Replacement { .. } => format!("{}{mode}", self.proxy),
            other => other.to_string(),
        };
        let rules = match &self.programmed {
            Some(modes) if modes.is_empty() => "; no Service rules".to_string(),
            Some(modes) => format!("; {} rules", modes.join(" and ")),
            None => String::new(),
        };
        let health = match &self.health {
            ProxyHealth::Synced { last_sync_seconds } => {
                format!("; synced, last sync {last_sync_seconds:.0}s ago")
            }
            ProxyHealth::Stale { seconds, .. } => format!("; NOT SYNCED for {seconds:.0}s"),
            ProxyHealth::NotRunning { detail } => format!("; NOT RUNNING: {detail}"),
            ProxyHealth::NotAnswering { detail } => format!("; NOT ANSWERING: {detail}"),
            ProxyHealth::Unknown { detail } => format!("; health unknown: {detail}"),
        };
        let warnings = match self.warnings.as_slice() {
            [] => String::new(),
            w => format!("; warns: {}", w.join(" | ")),
        };
        format!("{}: {proxy}{rules}{health}{warnings}", self.node)
    }
}

impl Dataplane {
    /// The one mode every node runs, if they agree; an error naming every
    /// node and its mode when they do not (a cluster runs one mode, on
    /// every node). `Ok(None)`: no node runs a mode this harness knows.
    pub fn cluster_mode(&self) -> Result<Option<String>, String> {
        let mut by_mode: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for n in &self.nodes {
            if let Some(mode) = n.effective_mode() {
                by_mode.entry(mode).or_default().push(&n.node);
            }
        }
        match by_mode.len() {
            0 => Ok(None),
            1 => Ok(by_mode.into_keys().next().map(str::to_string)),
            _ => {
                let each: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("{} {}", n.node, n.effective_mode().unwrap_or("no mode")))
                    .collect();
                Err(format!(
                    "the nodes run different Service proxy modes ({}); a cluster runs one mode on every node: finish or undo the switch",
                    each.join(", ")
                ))
            }
        }
    }

    /// How the cluster's mode was found, for the reports:
    /// `nftables (3 of 3 nodes: kube-proxy's report and the rules)`.
    pub fn describe_mode(&self) -> Option<String> {
        let mode = self.cluster_mode().ok()??;
        let agree = self
            .nodes
            .iter()
            .filter(|n| n.effective_mode() == Some(mode.as_str()))
            .count();
        Some(format!(
            "{mode} ({agree} of {} nodes, each read on the node)",
            self.nodes.len()
        ))
    }

    /// What the cluster's Services are programmed by when no node runs
    /// kube-proxy: `Cilium on 3 nodes`, `no Service proxy on 3 nodes`.
    pub fn describe_proxies(&self) -> String {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for n in &self.nodes {
            let name = match &n.proxy {
                ServiceProxy::KubeProxy { .. } => "kube-proxy".to_string(),
                ServiceProxy::Replacement { name, .. } => name.clone(),
                other => other.to_string(),
            };
            *by.entry(name).or_default() += 1;
        }
        let parts: Vec<String> = by
            .into_iter()
            .map(|(name, n)| format!("{name} on {n} node{}", if n == 1 { "" } else { "s" }))
            .collect();
        parts.join(", ")
    }

    /// Whether some node's kube-proxy may still be starting: it does not
    /// answer its health check, or answers that it has not synced.
    pub fn starting(&self) -> bool {
        self.nodes.iter().any(|n| {
            matches!(n.proxy, ServiceProxy::KubeProxy { .. })
                && matches!(
                    n.health,
                    ProxyHealth::NotAnswering { .. } | ProxyHealth::Stale { .. }
                )
        })
    }

    /// The problem lines of the nodes in `nodes` (every node when `None`).
    pub fn problems(&self, nodes: Option<&BTreeSet<String>>) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| nodes.is_none_or(|set| set.contains(&n.node)))
            .filter_map(NodeDataplane::problem)
            .collect()
    }
}

/// Whether a rules dump (iptables-save, nft list ruleset, kube-ipvs0's
/// addresses) names `address` as a whole address, not as a prefix of a longer
/// one (`10.96.0.1` is not in `10.96.0.10`).
pub fn holds_address(dump: &str, address: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == ':';
    dump.match_indices(address).any(|(at, _)| {
        let before = dump[..at].chars().next_back();
        let after = dump[at + address.len()..].chars().next();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

/// The lines naming each node in `involved` whose rules lack a Service
/// address that other nodes' rules hold: that node's proxy has not
/// programmed the Service. `services`: name and addresses; `dumps`: each
/// node's rules, `None` where they could not be read (nothing said of it).
pub fn unprogrammed(
    namespace: &str,
    services: &[(String, Vec<String>)],
    dumps: &BTreeMap<String, Option<String>>,
    involved: &BTreeSet<String>,
) -> Vec<String> {
    let mut lines = Vec::new();
    for (service, addresses) in services {
        for address in addresses {
            let (holders, lacking): (Vec<_>, Vec<_>) = dumps
                .iter()
                .filter_map(|(node, dump)| Some((node.as_str(), dump.as_deref()?)))
                .partition(|(_, dump)| holds_address(dump, address));
            if holders.is_empty() {
                continue;
            }
            let holders: Vec<&str> = holders.into_iter().map(|(n, _)| n).collect();
            for (node, _) in lacking.into_iter().filter(|(n, _)| involved.contains(*n)) {
                lines.push(format!(
                    "the Service proxy on {node} has not programmed Service {namespace}/{service} ({address}): the rules of {} hold it, {node}'s do not",
                    holders.join(", ")
                ));
            }
        }
    }
    lines
}

impl NodeDataplane {
    /// A test node: kube-system's kube-proxy in `mode`, synced a second ago.
    #[cfg(test)]
    pub(crate) fn synced_kube_proxy(name: &str, mode: &str) -> Self {
        NodeDataplane {
            node: name.into(),
            proxy: ServiceProxy::KubeProxy {
                daemon_set: "kube-system/kube-proxy".into(),
                pod: format!("kube-proxy-{name}"),
            },
            mode: Some(mode.into()),
            programmed: None,
            health: ProxyHealth::Synced {
                last_sync_seconds: 1.0,
            },
            warnings: vec![],
        }
    }

    /// The node's mode: what its proxy reports, else the one mode whose
    /// rules it holds (ipvs keeps iptables rules too: ipvs wins).
    pub fn effective_mode(&self) -> Option<&str> {
        if let Some(mode) = &self.mode {
            return Some(mode);
        }
        if !matches!(self.proxy, ServiceProxy::KubeProxy { .. }) {
            return None;
        }
        let modes = self.programmed.as_ref()?;
        if modes.iter().any(|m| m == "ipvs") {
            return Some("ipvs");
        }
        match modes.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kube_proxy_that_does_not_answer_or_has_not_synced_may_be_starting() {
        let synced = NodeDataplane::synced_kube_proxy("a", "nftables");
        let mut silent = NodeDataplane::synced_kube_proxy("b", "nftables");
        silent.health = ProxyHealth::NotAnswering {
            detail: "connection refused".into(),
        };
        let mut crashing = NodeDataplane::synced_kube_proxy("c", "nftables");
        crashing.health = ProxyHealth::NotRunning {
            detail: "CrashLoopBackOff".into(),
        };
        let of = |nodes: Vec<NodeDataplane>| Dataplane {
            nodes,
            seconds: 0.0,
        };
        assert!(!of(vec![synced.clone()]).starting());
        assert!(of(vec![synced.clone(), silent]).starting());
        // A pod that is not running is not waited for: its restarts take longer.
        assert!(!of(vec![synced, crashing]).starting());
    }

    #[test]
    fn a_service_address_is_found_whole_in_any_modes_rules() {
        let iptables = "-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j KUBE-SVC-X";
        let nftables = "elements = { 10.96.14.2 . tcp . 80 : goto service-ABC-ns/web/tcp/http }";
        let ipvs = "5: kube-ipvs0    inet 10.96.7.1/32 scope global kube-ipvs0";
        assert!(holds_address(iptables, "10.96.0.10"));
        assert!(!holds_address(iptables, "10.96.0.1"));
        assert!(holds_address(nftables, "10.96.14.2"));
        assert!(!holds_address(nftables, "10.96.14.21"));
        assert!(!holds_address(nftables, "0.96.14.2"));
        assert!(holds_address(ipvs, "10.96.7.1"));
        assert!(holds_address("fd00:10:96::a1 . tcp", "fd00:10:96::a1"));
        assert!(!holds_address("fd00:10:96::a1b . tcp", "fd00:10:96::a1"));
    }

    #[test]
    fn names_an_involved_node_whose_rules_lack_what_others_hold() {
        let services = vec![("web".to_string(), vec!["10.96.14.2".to_string()])];
        let held = Some("-d 10.96.14.2/32".to_string());
        let dumps: BTreeMap<String, Option<String>> = [
            ("cp".to_string(), held.clone()),
            ("w1".to_string(), held),
            ("w2".to_string(), Some("-d 10.96.0.10/32".to_string())),
            ("w3".to_string(), None),
        ]
        .into();
        let involved: BTreeSet<String> = ["w2".to_string(), "w3".to_string()].into();
        assert_eq!(
            unprogrammed("ns", &services, &dumps, &involved),
            ["the Service proxy on w2 has not programmed Service ns/web (10.96.14.2): the rules of cp, w1 hold it, w2's do not"]
        );
        // Not involved, or held nowhere (nothing to compare with): nothing said.
        let only_cp: BTreeSet<String> = ["cp".to_string()].into();
        assert!(unprogrammed("ns", &services, &dumps, &only_cp).is_empty());
        let nowhere = vec![("db".to_string(), vec!["10.96.9.9".to_string()])];
        assert!(unprogrammed("ns", &nowhere, &dumps, &involved).is_empty());
    }

    fn node(name: &str, mode: Option<&str>, health: ProxyHealth) -> NodeDataplane {
        NodeDataplane {
            node: name.into(),
            proxy: ServiceProxy::KubeProxy {
                daemon_set: "kube-system/kube-proxy".into(),
                pod: format!("kube-proxy-{name}"),
            },
            mode: mode.map(String::from),
            programmed: mode.map(|m| vec![m.to_string()]),
            health,
            warnings: vec![],
        }
    }

    fn synced() -> ProxyHealth {
        ProxyHealth::Synced {
            last_sync_seconds: 2.0,
        }
    }

    #[test]
    fn one_mode_on_every_node_is_the_clusters() {
        let d = Dataplane {
            nodes: vec![
                node("a", Some("nftables"), synced()),
                node("b", Some("nftables"), synced()),
            ],
            seconds: 0.4,
        };
        assert_eq!(d.cluster_mode(), Ok(Some("nftables".into())));
        assert_eq!(
            d.describe_mode().unwrap(),
            "nftables (2 of 2 nodes, each read on the node)"
        );
        assert!(d.problems(None).is_empty());
    }

    #[test]
    fn mixed_modes_name_every_node() {
        let d = Dataplane {
            nodes: vec![
                node("a", Some("nftables"), synced()),
                node("b", Some("iptables"), synced()),
                node("c", Some("nftables"), synced()),
            ],
            seconds: 0.4,
        };
        let err = d.cluster_mode().unwrap_err();
        assert!(
            err.starts_with(
                "the nodes run different Service proxy modes (a nftables, b iptables, c nftables)"
            ),
            "{err}"
        );
    }

    #[test]
    fn rules_tell_the_mode_when_the_proxy_does_not() {
        let mut n = node("a", None, synced());
        n.programmed = Some(vec!["iptables".into(), "ipvs".into()]);
        assert_eq!(n.effective_mode(), Some("ipvs"));
        n.programmed = Some(vec!["iptables".into(), "nftables".into()]);
        assert_eq!(n.effective_mode(), None);
        n.proxy = ServiceProxy::Unknown;
        n.programmed = Some(vec!["nftables".into()]);
        assert_eq!(
            n.effective_mode(),
            None,
            "rules without a proxy run no mode"
        );
    }

    #[test]
    fn a_stalled_or_missing_proxy_is_named_with_its_node() {
        let stale = node(
            "w2",
            Some("nftables"),
            ProxyHealth::Stale {
                seconds: 95.0,
                detail: "healthz lastUpdated 10:00:00Z, currentTime 10:01:35Z".into(),
            },
        );
        assert_eq!(
            stale.problem().unwrap(),
            "kube-proxy on w2 has not synced for 95s (healthz lastUpdated 10:00:00Z, currentTime 10:01:35Z)"
        );
        let mut gone = node(
            "w1",
            None,
            ProxyHealth::Unknown {
                detail: "no proxy".into(),
            },
        );
        gone.proxy = ServiceProxy::Unknown;
        gone.programmed = Some(vec!["nftables".into()]);
        assert_eq!(
            gone.problem().unwrap(),
            "no kube-proxy or known replacement runs on w1: its nftables rules are left over or kept by an unknown proxy"
        );
        let d = Dataplane {
            nodes: vec![stale, gone, node("w3", Some("nftables"), synced())],
            seconds: 1.0,
        };
        let only_w3: BTreeSet<String> = ["w3".to_string()].into();
        assert!(d.problems(Some(&only_w3)).is_empty());
        assert_eq!(d.problems(None).len(), 2);
        assert_eq!(
            d.describe_proxies(),
            "an unknown Service proxy on 1 node, kube-proxy on 2 nodes"
        );
    }

    #[test]
    fn describes_a_node_in_one_line() {
        let mut n = node("w1", Some("ipvs"), synced());
        n.warnings = vec!["The ipvs proxier is deprecated".into()];
        assert_eq!(
            n.describe(),
            "w1: kube-proxy ipvs (DaemonSet kube-system/kube-proxy, pod kube-proxy-w1); ipvs rules; synced, last sync 2s ago; warns: The ipvs proxier is deprecated"
        );
    }
}

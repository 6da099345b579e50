//! What a case needs from a cluster, derived from its declaration and its
//! objects (placements, node picks, zone assertions, replicas, docker-backed
//! actions, a mode switch), and which of those needs a cluster cannot meet:
//! a case that cannot hold there ends in a second, saying why, instead of
//! finding out by waiting for pods that cannot start. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::model::{
    Action, Assertion, Case, ClientPlacement, ClientPods, ClusterSize, Readiness, CLIENT_NAME,
};
use crate::template::{self, NodePick, Placeholder};

/// One thing a case needs from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Nodes at all (`${nodeIP:1}` picks the second, in name order).
    Nodes(usize),
    /// Nodes pods can land on (one DaemonSet backend on each).
    SchedulableNodes(usize),
    /// Schedulable nodes spread over this many `topology.kubernetes.io/zone`s.
    Zones(usize),
    /// Room for this many more pods on the schedulable nodes.
    Pods(u64),
    /// docker on the host of the cluster's nodes (a kind cluster of this
    /// host): for what the case does next to the nodes.
    Docker(&'static str),
    /// The right to reconfigure kube-proxy (switch its mode, set a feature
    /// gate) for the whole cluster.
    SwitchProxyMode,
    /// kube-controller-manager's Endpoints controller: the case waits on
    /// the v1 Endpoints it writes (deprecated since v1.33, KEP-4974; a
    /// cluster may run without it, as upstream's periodic job does).
    EndpointsController,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: &dyn fmt::Display, one: &str, many: &str, count: u64| {
            format!("{n} {}", if count == 1 { one } else { many })
        };
        match self {
            Need::Nodes(n) => f.write_str(&plural(n, "node", "nodes", *n as u64)),
            Need::SchedulableNodes(n) => f.write_str(&plural(
                n,
                "schedulable node",
                "schedulable nodes",
                *n as u64,
            )),
            Need::Zones(n) => write!(
                f,
                "schedulable nodes in {n} zones (topology.kubernetes.io/zone)"
            ),
            Need::Pods(n) => write!(f, "room for {n} pods"),
            Need::Docker(why) => write!(f, "docker on the nodes' host ({why})"),
            Need::SwitchProxyMode => {
                f.write_str("the right to reconfigure kube-proxy (its mode, its feature gates)")
            }
            Need::EndpointsController => f.write_str(
                "the v1 Endpoints controller (kube-controller-manager's endpoints-controller): it waits on the Endpoints that controller writes",
            ),
        }
    }
}

/// What the cluster offers, read once before its cases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capacity {
    pub cluster: String,
    /// Every node, in name order.
    pub nodes: Vec<String>,
    /// Nodes ordinary pods can land on, with their zone label.
    pub schedulable: BTreeMap<String, Option<String>>,
    /// Pods that still fit on the schedulable nodes (allocatable minus
    /// running), summed.
    pub free_pods: u64,
    /// docker reaches the nodes (a kind cluster of this host).
    pub docker: bool,
    /// svcconf may change kube-proxy's mode there.
    pub may_switch_mode: bool,
    /// kube-controller-manager's `--controllers` flag, where its pod can be
    /// read (a kubeadm cluster); `None` when it cannot, taken as the default
    /// (every controller on).
    pub controllers: Option<String>,
    /// kube-controller-manager's `--max-endpoints-per-slice` (the default,
    /// 100, where the flag is not set or its pod cannot be read).
    pub max_endpoints_per_slice: u32,
    /// kube-apiserver's `--feature-gates`, where its pod can be read; a gate
    /// not named has its release's default.
    pub apiserver_gates: BTreeMap<String, bool>,
}

impl Capacity {
    /// What counts written relative to the cluster are counted on.
    pub fn size(&self) -> ClusterSize {
        ClusterSize {
            max_endpoints_per_slice: self.max_endpoints_per_slice,
            nodes: self.nodes.len(),
        }
    }

    /// Whether the Endpoints controller runs: kube-controller-manager's
    /// flag names it, or turns on every default controller (`*`) without
    /// turning it off (`-endpoints-controller`).
    pub fn endpoints_controller(&self) -> bool {
        let Some(flag) = &self.controllers else {
            return true;
        };
        let names: Vec<&str> = flag.split(',').map(str::trim).collect();
        names.contains(&"endpoints-controller")
            || (names.contains(&"*") && !names.contains(&"-endpoints-controller"))
    }
}

/// Every need of `case`, whose objects (fixtures expanded) are `objects`.
pub fn needs(case: &Case, objects: &[Value]) -> BTreeSet<Need> {
    let mut out = BTreeSet::new();
    let checks: Vec<_> = case
        .checks
        .iter()
        .chain(case.steps.iter().flat_map(|s| s.checks.iter()))
        .collect();
    for check in &checks {
        match &check.from {
            // A node for the backends and one for the client: the client
            // DaemonSet tolerates every taint, so a tainted control plane
            // can be the second. Whether the backends leave a node free is
            // seen once they run (the check's placement says so).
            ClientPlacement::OtherNodeThan(_) => {
                out.insert(Need::Nodes(2));
            }
            ClientPlacement::ExternalContainer => {
                out.insert(Need::Docker("a client container on the nodes' network"));
            }
            _ => {}
        }
        let zones = check
            .expect
            .iter()
            .chain(check.expect_by_mode.values().flatten())
            .any(|a| matches!(a, Assertion::BackendsInClientZone(_)));
        if zones {
            out.insert(Need::Zones(2));
        }
    }
    // A DaemonSet backend has one pod per node: so many ready endpoints
    // need so many nodes.
    let daemonset_backend = case
        .ready
        .iter()
        .any(|r| matches!(r, Readiness::DaemonSet(name) if name != CLIENT_NAME));
    if daemonset_backend {
        for r in &case.ready {
            let ready = match r {
                Readiness::EndpointSlices { ready, .. }
                | Readiness::EndpointSliceAddresses { ready, .. } => ready.fixed(),
                Readiness::Endpoints { ready, .. } => Some(*ready),
                _ => None,
            };
            if let Some(ready) = ready {
                out.insert(Need::SchedulableNodes(ready));
            }
        }
    }
    let actions = case
        .steps
        .iter()
        .flat_map(|s| s.actions.iter())
        .chain(case.sabotage.actions.iter());
    let waits = case
        .ready
        .iter()
        .chain(case.steps.iter().flat_map(|s| s.settle.iter()))
        .chain(case.sabotage.settle.iter());
    if waits
        .clone()
        .any(|r| matches!(r, Readiness::Endpoints { .. }))
    {
        out.insert(Need::EndpointsController);
    }
    for action in actions {
        match action {
            Action::NodeAddress { .. } => {
                out.insert(Need::Docker("an address placed on a node"));
            }
            Action::Container { .. } => {
                out.insert(Need::Docker("a server container on the nodes' network"));
            }
            Action::ProxyMode { .. } | Action::ProxyFeatureGate { .. } => {
                out.insert(Need::SwitchProxyMode);
            }
            _ => {}
        }
    }
    // Node picks anywhere in the declaration.
    let declared = serde_json::to_string(&(&case.checks, &case.steps, &case.sabotage, objects))
        .unwrap_or_default();
    for placeholder in template::placeholders(&[declared]) {
        let (Placeholder::NodeIp(pick) | Placeholder::SpareIp(pick)) = placeholder else {
            continue;
        };
        match pick {
            NodePick::Index(i) if i < usize::MAX => {
                out.insert(Need::Nodes(i + 1));
            }
            // Any node kube-proxy runs on, tainted or not.
            NodePick::Without(_) => {
                out.insert(Need::Nodes(2));
            }
            _ => {}
        }
    }
    let own_clients = case.client_pods() == ClientPods::Own;
    let pods = pods_of(objects, own_clients);
    if pods > 0 {
        out.insert(Need::Pods(pods));
    }
    // Of each kind of count, the largest says it all.
    let mut seen = std::collections::HashSet::new();
    out.into_iter()
        .rev()
        .filter(|n| seen.insert(std::mem::discriminant(n)))
        .collect()
}

/// Pods the objects start, counting a DaemonSet as one pod (its pods land
/// one per node, on nodes that have room for one: they never crowd a node).
pub fn pods_of(objects: &[Value], own_clients: bool) -> u64 {
    let replicas = |o: &Value| o.pointer("/spec/replicas").and_then(Value::as_u64);
    objects
        .iter()
        .map(|o| match o.get("kind").and_then(Value::as_str) {
            Some("Deployment" | "StatefulSet" | "ReplicaSet") => replicas(o).unwrap_or(1),
            Some("Pod") => 1,
            Some("Job") => o
                .pointer("/spec/parallelism")
                .and_then(Value::as_u64)
                .unwrap_or(1),
            _ => 0,
        })
        .sum::<u64>()
        + u64::from(own_clients)
}

/// Why the case is not for this cluster: it needs what the cluster's own
/// configuration turns off (the v1 Endpoints controller, deprecated, off in
/// upstream's own conformance job), not what it lacks. Such a case is
/// skipped with this reason, as a dual-stack case is on one family; a
/// shortage ([`unmet`]) is an error.
pub fn turned_off(needs: &BTreeSet<Need>, capacity: &Capacity) -> Option<String> {
    (needs.contains(&Need::EndpointsController) && !capacity.endpoints_controller()).then(|| {
        format!(
            "needs {}; {} has it turned off (kube-controller-manager --controllers={})",
            Need::EndpointsController,
            capacity.cluster,
            capacity.controllers.as_deref().unwrap_or_default()
        )
    })
}

/// The needs `capacity` cannot meet, each as `needs X; <cluster> has Y`;
/// those its configuration turns off are [`turned_off`]'s.
pub fn unmet(needs: &BTreeSet<Need>, capacity: &Capacity) -> Vec<String> {
    let c = capacity;
    let names = |nodes: &mut dyn Iterator<Item = &String>| {
        let list: Vec<&str> = nodes.map(String::as_str).collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    needs
        .iter()
        .filter_map(|need| {
            let has = match need {
                Need::Nodes(n) if c.nodes.len() < *n => {
                    format!("{} ({})", c.nodes.len(), names(&mut c.nodes.iter()))
                }
                Need::SchedulableNodes(n) if c.schedulable.len() < *n => format!(
                    "{} ({})",
                    c.schedulable.len(),
                    names(&mut c.schedulable.keys())
                ),
                Need::Zones(n) => {
                    let zones: BTreeSet<&String> = c.schedulable.values().flatten().collect();
                    let unlabelled: Vec<&String> = c
                        .schedulable
                        .iter()
                        .filter(|(_, z)| z.is_none())
                        .map(|(n, _)| n)
                        .collect();
                    if zones.len() >= *n && unlabelled.is_empty() {
                        return None;
                    }
                    let mut has = format!(
                        "{} zone{} ({})",
                        zones.len(),
                        if zones.len() == 1 { "" } else { "s" },
                        names(&mut zones.into_iter())
                    );
                    if !unlabelled.is_empty() {
                        has.push_str(&format!(
                            " and nodes without a zone label ({})",
                            names(&mut unlabelled.into_iter())
                        ));
                    }
                    has
                }
                Need::Pods(n) if c.free_pods < *n => format!(
                    "room for {} more on its {} schedulable node{}",
                    c.free_pods,
                    c.schedulable.len(),
                    if c.schedulable.len() == 1 { "" } else { "s" }
                ),
                Need::Docker(_) if !c.docker => {
                    "no docker that reaches its nodes (not a kind cluster of this host)".to_string()
                }
                Need::SwitchProxyMode if !c.may_switch_mode => {
                    "not been given it: svcconf switches modes on the kind clusters it makes, \
                     or on yours with SVCCONF_ALLOW_MODE_SWITCH=1 (else --skip the case)"
                        .to_string()
                }
                _ => return None,
            };
            Some(format!("needs {need}; {} has {has}", c.cluster))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Project;
    use crate::fixture::Fixtures;
    use crate::kube::manifest::ImageMap;

    fn catalog_needs() -> BTreeMap<String, BTreeSet<Need>> {
        let project = Project::built_in();
        let catalog = project.load_catalog().unwrap();
        let fixtures = Fixtures::new(project, ImageMap::default());
        catalog
            .cases()
            .iter()
            .map(|c| {
                // As the runner counts them on a cluster at the default limit.
                let objects = crate::template::sized(
                    &fixtures.objects(c).unwrap(),
                    crate::model::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
                );
                (c.name.clone(), needs(c, &objects))
            })
            .collect()
    }

    fn one_node(name: &str) -> Capacity {
        Capacity {
            cluster: "plain".into(),
            nodes: vec![name.into()],
            schedulable: [(name.to_string(), None)].into(),
            free_pods: 100,
            docker: true,
            may_switch_mode: false,
            controllers: None,
            max_endpoints_per_slice: crate::model::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            apiserver_gates: BTreeMap::new(),
        }
    }

    #[test]
    fn reads_the_needs_from_the_declarations() {
        let all = catalog_needs();
        let of = |name: &str| all.get(name).unwrap_or_else(|| panic!("no case {name}"));
        assert!(of("endpointslice-sharding").contains(&Need::Pods(120)));
        assert!(of("prefer-close").contains(&Need::Zones(2)));
        // A DaemonSet backend with 2 ready endpoints: 2 nodes.
        assert!(of("prefer-same-node").contains(&Need::SchedulableNodes(2)));
        assert!(of("mode-switch").contains(&Need::SwitchProxyMode));
        assert!(of("external-ips")
            .iter()
            .any(|n| matches!(n, Need::Docker(_))));
        // One count of each kind: the largest.
        for (case, needs) in &all {
            let pods = needs.iter().filter(|n| matches!(n, Need::Pods(_))).count();
            assert!(pods <= 1, "{case}: {needs:?}");
        }
    }

    #[test]
    fn a_one_node_cluster_says_what_it_lacks() {
        let all = catalog_needs();
        let capacity = one_node("plain-control-plane");
        let sharding = unmet(&all["endpointslice-sharding"], &capacity);
        assert_eq!(
            sharding,
            vec!["needs room for 120 pods; plain has room for 100 more on its 1 schedulable node"]
        );
        let zones = unmet(&all["prefer-close"], &capacity);
        assert!(
            zones.iter().any(|m| m
                == "needs schedulable nodes in 2 zones (topology.kubernetes.io/zone); plain has 0 zones (none) and nodes without a zone label (plain-control-plane)"),
            "{zones:?}"
        );
        let switch = unmet(&all["mode-switch"], &capacity);
        assert!(
            switch.iter().any(|m| m.starts_with(
                "needs the right to reconfigure kube-proxy (its mode, its feature gates); plain has not been given it"
            )),
            "{switch:?}"
        );
        // Some case needs a second schedulable node, and says so.
        let two = unmet(&BTreeSet::from([Need::SchedulableNodes(2)]), &capacity);
        assert_eq!(
            two,
            vec!["needs 2 schedulable nodes; plain has 1 (plain-control-plane)"]
        );
        let fit: Vec<&String> = all
            .iter()
            .filter(|(_, n)| unmet(n, &capacity).is_empty())
            .map(|(c, _)| c)
            .collect();
        println!("fit on one node: {fit:?}");
        assert!(fit.contains(&&"dns".to_string()), "{fit:?}");
        assert!(!fit.contains(&&"prefer-same-node".to_string()));
        // Sent from a node without the backends: not on one node.
        assert!(!fit.contains(&&"clusterip-basic".to_string()));
    }

    #[test]
    fn a_tainted_control_plane_is_a_node_for_the_client() {
        let all = catalog_needs();
        // Two nodes, the control plane tainted: the backends all land on the
        // worker, a client pod on the control plane is on a node without them.
        let capacity = Capacity {
            nodes: vec!["cp".into(), "w1".into()],
            ..one_node("w1")
        };
        for case in [
            "clusterip-basic",
            "multi-port",
            "affinity-clientip",
            "nodeport-local",
        ] {
            assert_eq!(unmet(&all[case], &capacity), Vec::<String>::new(), "{case}");
        }
        // A DaemonSet backend on two nodes still needs two schedulable ones.
        assert_eq!(
            unmet(&all["prefer-same-node"], &capacity),
            vec!["needs 2 schedulable nodes; plain has 1 (w1)"]
        );
    }

    #[test]
    fn a_three_node_kind_cluster_meets_every_need() {
        let all = catalog_needs();
        let capacity = Capacity {
            cluster: "svcconf-nftables".into(),
            nodes: vec!["cp".into(), "w1".into(), "w2".into()],
            schedulable: [
                ("w1".to_string(), Some("zone-a".to_string())),
                ("w2".to_string(), Some("zone-b".to_string())),
            ]
            .into(),
            free_pods: 210,
            docker: true,
            may_switch_mode: true,
            controllers: None,
            max_endpoints_per_slice: crate::model::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            apiserver_gates: BTreeMap::new(),
        };
        for (case, needs) in &all {
            assert!(unmet(needs, &capacity).is_empty(), "{case}: {needs:?}");
        }
    }

    #[test]
    fn only_a_case_waiting_on_v1_endpoints_needs_their_controller() {
        let all = catalog_needs();
        let needing: Vec<&String> = all
            .iter()
            .filter(|(_, n)| n.contains(&Need::EndpointsController))
            .map(|(case, _)| case)
            .collect();
        assert_eq!(needing, ["endpoints-readiness"]);
        let mut capacity = one_node("n0");
        for (flag, runs) in [
            (None, true),
            (Some("*,bootstrapsigner,tokencleaner"), true),
            (
                Some("*,-endpoints-controller,-endpointslice-mirroring-controller"),
                false,
            ),
            (Some("endpointslice-controller,endpoints-controller"), true),
            (Some("endpointslice-controller"), false),
        ] {
            capacity.controllers = flag.map(String::from);
            assert_eq!(capacity.endpoints_controller(), runs, "{flag:?}");
        }
        capacity.controllers = Some("*,-endpoints-controller".into());
        assert!(!unmet(&all["endpoints-readiness"], &capacity)
            .iter()
            .any(|l| l.contains("Endpoints controller")));
        assert_eq!(
            turned_off(&all["endpoints-readiness"], &capacity).unwrap(),
            "needs the v1 Endpoints controller (kube-controller-manager's endpoints-controller): it waits on the Endpoints that controller writes; plain has it turned off (kube-controller-manager --controllers=*,-endpoints-controller)"
        );
    }
}

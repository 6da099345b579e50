//! svcconf run from a pod of the cluster it checks (a sonobuoy plugin, a
//! Job): everything it starts is inside the cluster, so a case whose client
//! or server must be outside it cannot run, and is skipped with what it
//! would need. From outside (a kubeconfig) the same cases run.
//!
//! - `from: external`: the harness process is the client. In a pod its
//!   traffic is pod-network traffic, which kube-proxy treats on purpose
//!   unlike traffic from outside (a NodePort with externalTrafficPolicy
//!   Local answers pods from every node; traffic to a LoadBalancer IP is
//!   short-circuited to the Service), so the case would not test what it
//!   says.
//! - `from: externalContainer`, and the step actions `container` and
//!   `nodeAddress`: a container on the nodes' docker network, an address put
//!   on a node: they need docker on the nodes' host (kind).
//! - MetalLB without `--lb-addresses`: from a pod there is no kind network
//!   to carve addresses from.

use crate::model::{Action, Addon, Case, Check, ClientPlacement, Step};

/// Why `case` cannot run from a pod of the cluster, or `None` when it can;
/// `lb_addresses`: `--lb-addresses` was given.
pub fn skip_reason(case: &Case, lb_addresses: bool) -> Option<String> {
    let why = outside_part(case).or_else(|| {
        (case.needs.contains(&Addon::Metallb) && !lb_addresses).then(|| {
            "it needs LoadBalancer addresses for MetalLB and none were given: pass --lb-addresses A-B (free addresses on the nodes' network)".to_string()
        })
    })?;
    Some(format!("in-cluster run (svcconf in a pod): {why}"))
}

/// The first part of `case` that must be outside the cluster.
fn outside_part(case: &Case) -> Option<String> {
    let checks = |where_: &str, checks: &[Check]| {
        checks.iter().find_map(|c| match c.from {
            ClientPlacement::External => Some(format!(
                "{where_}check {} sends its traffic from outside the cluster (from: external); from a pod it would be pod-network traffic, which kube-proxy treats differently: run svcconf from a host outside the pod network (--kubeconfig)",
                c.name
            )),
            ClientPlacement::ExternalContainer => Some(format!(
                "{where_}check {} sends its traffic from a fresh container on the nodes' network (from: externalContainer): it needs docker on the nodes' host (kind), run svcconf there",
                c.name
            )),
            _ => None,
        })
    };
    let actions = |where_: String, actions: &[Action]| {
        actions.iter().find_map(|a| match a {
            Action::Container { name, .. } => Some(format!(
                "{where_} starts container {name}, a server outside the cluster on the nodes' network: it needs docker on the nodes' host (kind), run svcconf there"
            )),
            Action::NodeAddress { .. } => Some(format!(
                "{where_} puts an address on a node (ip addr add in the node): it needs docker on the nodes' host (kind), run svcconf there"
            )),
            _ => None,
        })
    };
    let step = |s: &Step| {
        actions(format!("step {}", s.name), &s.actions)
            .or_else(|| checks(&format!("step {}: ", s.name), &s.checks))
    };
    checks("", &case.checks)
        .or_else(|| case.steps.iter().find_map(step))
        .or_else(|| actions("its sabotage".into(), &case.sabotage.actions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Project;

    #[test]
    fn the_catalog_splits_into_cases_a_pod_runs_and_cases_it_skips() {
        let project = Project::built_in();
        let catalog = project.load_catalog().unwrap();
        let skipped = |lb: bool| -> Vec<String> {
            catalog
                .cases()
                .iter()
                .filter(|c| skip_reason(c, lb).is_some())
                .map(|c| c.name.clone())
                .collect()
        };
        let without_lb = skipped(false);
        for name in [
            "nodeport-local",
            "nodeport-all-nodes",
            "external-ips",
            "selectorless-endpoints",
            "lb-reachable",
            "lb-assigned",
            "wordpress-mysql",
        ] {
            assert!(without_lb.contains(&name.to_string()), "{name}");
        }
        for name in ["clusterip-basic", "dns", "affinity-timeout", "headless"] {
            assert!(!without_lb.contains(&name.to_string()), "{name}");
        }
        // With addresses, a LoadBalancer case without outside client runs.
        assert!(!skipped(true).contains(&"lb-assigned".to_string()));
        let case = catalog.get("external-ips").unwrap();
        assert_eq!(
            skip_reason(case, true).unwrap(),
            "in-cluster run (svcconf in a pod): step place-external-ip puts an address on a node (ip addr add in the node): it needs docker on the nodes' host (kind), run svcconf there"
        );
        let case = catalog.get("nodeport-local").unwrap();
        assert!(skip_reason(case, true)
            .unwrap()
            .contains("check local-node-keeps-client-ip sends its traffic from outside the cluster (from: external)"));
    }
}

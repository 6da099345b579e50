//! Run-time values for templates (`${clusterIP:web}`, `${nodeIP:0}`, ...):
//! what a case's targets, expected answers and step patches refer to.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::docker;
use crate::kube::jig::{Jig, JigError};
use crate::kube::nodes;
use crate::kube::service_cidr;
use crate::template::{self, NodePick, Placeholder, PodFact};

/// The value of every placeholder `templates` use, keyed as
/// [`Placeholder::key`]; `namespace` is always there.
pub async fn vars(jig: &Jig, templates: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut vars = known_vars(jig, templates);
    for placeholder in template::placeholders(templates) {
        let value = match &placeholder {
            Placeholder::MaxEndpointsPerSlice(_) => continue,
            Placeholder::ClusterIp { namespace, service } => {
                let ns = namespace.clone().unwrap_or_else(|| jig.namespace.clone());
                jig.in_namespace(ns)
                    .cluster_ip(service)
                    .await
                    .map_err(|e| crate::cluster::error_chain(&e))?
            }
            Placeholder::PodIps { selector } => ips(jig.ready_pods(selector).await)?,
            Placeholder::AllPodIps { selector } => ips(jig.running_pods(selector).await)?,
            Placeholder::NodeIp(pick) => node_ip(jig, pick).await?,
            Placeholder::SpareIp(pick) => {
                let node_ip = node_ip(jig, pick).await?;
                spare_ip(&node_ip, &jig.namespace)
            }
            Placeholder::NodePort { service } => {
                nodes::service_port(jig, service, nodes::ServicePort::NodePort).await?
            }
            Placeholder::HealthCheckNodePort { service } => {
                nodes::service_port(jig, service, nodes::ServicePort::HealthCheck).await?
            }
            Placeholder::LoadBalancerIp { service } => {
                let ingress = jig
                    .ingress(service)
                    .await
                    .map_err(|e| crate::cluster::error_chain(&e))?;
                let ingress: Vec<&str> = ingress.split(',').filter(|i| !i.is_empty()).collect();
                match jig.family.pick(&ingress) {
                    Some(ip) => ip.to_string(),
                    None if ingress.is_empty() => {
                        return Err(format!("Service {service} has no EXTERNAL-IP (Pending)"))
                    }
                    None => {
                        return Err(format!(
                            "Service {service} has no {} EXTERNAL-IP (it has {})",
                            jig.family,
                            ingress.join(", ")
                        ))
                    }
                }
            }
            Placeholder::ServiceCidrIp(n) => {
                let cidr = service_cidr::of_namespace(&jig.client, &jig.namespace)
                    .await
                    .map_err(|e| crate::cluster::error_chain(&e))?
                    .ok_or_else(|| {
                        format!(
                            "no ServiceCIDR was added for namespace {} (a `serviceCIDR` step adds one)",
                            jig.namespace
                        )
                    })?;
                service_cidr::address(&cidr, *n)?
            }
            Placeholder::DocumentationIp(n) => jig.family.documentation_ip(*n),
            Placeholder::ContainerIp { name } => {
                docker::container_ip(&docker::container_name(&jig.namespace, name), jig.family)
                    .await?
            }
        };
        vars.insert(placeholder.key(), value);
    }
    Ok(vars)
}

/// The values of `templates`' placeholders the jig itself knows, with no
/// call to the API: the namespace and shares of the cluster's EndpointSlice
/// size limit. Fixtures are rendered with these before they are applied.
pub fn known_vars(jig: &Jig, templates: &[String]) -> BTreeMap<String, String> {
    let mut vars = template::slice_share_vars(jig.size.max_endpoints_per_slice, templates);
    vars.insert("namespace".to_string(), jig.namespace.clone());
    vars
}

/// The pods' IPs, comma-separated (a multi-valued placeholder).
fn ips(pods: Result<Vec<PodFact>, JigError>) -> Result<String, String> {
    let pods = pods.map_err(|e| crate::cluster::error_chain(&e))?;
    Ok(pods
        .iter()
        .map(|p| p.ip.as_str())
        .collect::<Vec<_>>()
        .join(","))
}

/// The InternalIP of the node `pick` means.
pub async fn node_ip(jig: &Jig, pick: &NodePick) -> Result<String, String> {
    Ok(node(jig, pick).await?.1)
}

/// `(name, InternalIP)` of the node `pick` means.
pub async fn node(jig: &Jig, pick: &NodePick) -> Result<(String, String), String> {
    let nodes = nodes::internal_ips(&jig.client, Some(jig.family))
        .await
        .map_err(|e| format!("listing nodes: {e}"))?;
    let pod_nodes: BTreeSet<String> = match pick {
        NodePick::With(sel) | NodePick::Without(sel) => jig
            .ready_pods(sel)
            .await
            .map_err(|e| crate::cluster::error_chain(&e))?
            .into_iter()
            .map(|p| p.node)
            .collect(),
        NodePick::Hosting(sel) => jig
            .running_pods(sel)
            .await
            .map_err(|e| crate::cluster::error_chain(&e))?
            .into_iter()
            .map(|p| p.node)
            .collect(),
        NodePick::Index(_) | NodePick::Each => BTreeSet::new(),
    };
    pick.pick(&nodes, &pod_nodes).cloned()
}

/// An address on a node's network that no one uses, for this case's
/// namespace: `a.b.c.d` → `a.b.X.Y`, X in 200..250 and Y in 2..252 taken from
/// a hash of the namespace. The namespace's random suffix keeps concurrent
/// runs (the plain and sabotaged runs of a case, other clusters on the
/// docker network all kind clusters share) apart; it assumes that network
/// is a /16 (kind's default) whose allocations stay below `a.b.200.0`
/// (docker counts up from `a.b.0.2`).
///
/// IPv6: the node's /64 (kind's IPv6 subnet is one), `::X:Y` with X in
/// 0xc8..0xfa, above what docker hands out.
pub fn spare_ip(node_ip: &str, namespace: &str) -> String {
    let h = template::namespace_hash(namespace);
    let x = 200 + (h % 50) as u8;
    let y = 2 + ((h / 50) % 250) as u8;
    match node_ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(ip)) => {
            let [a, b, c, d, ..] = ip.segments();
            std::net::Ipv6Addr::new(a, b, c, d, 0, 0, x.into(), y.into()).to_string()
        }
        _ => {
            let [a, b, ..] = node_ip
                .parse::<std::net::Ipv4Addr>()
                .map_or([0; 4], |ip| ip.octets());
            std::net::Ipv4Addr::new(a, b, x, y).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_addresses_differ_per_namespace_and_stay_in_the_network() {
        let a = spare_ip("172.18.0.7", "svcconf-external-ips-abcde");
        let b = spare_ip("172.18.0.7", "svcconf-external-ips-abcdf");
        assert_ne!(a, b);
        assert_eq!(a, spare_ip("172.18.0.3", "svcconf-external-ips-abcde"));
        for ip in [&a, &b] {
            let [p, q, x, y] = ip.parse::<std::net::Ipv4Addr>().unwrap().octets();
            assert_eq!((p, q), (172, 18));
            assert!((200..250).contains(&x) && (2..252).contains(&y), "{ip}");
        }
        let v6 = spare_ip("fc00:f853:ccd:e793::7", "svcconf-external-ips-abcde");
        let [p, q, r, s, 0, 0, x, y] = v6.parse::<std::net::Ipv6Addr>().unwrap().segments() else {
            panic!("{v6}")
        };
        assert_eq!((p, q, r, s), (0xfc00, 0xf853, 0xccd, 0xe793));
        assert!((200..250).contains(&x) && (2..252).contains(&y), "{v6}");
    }
}

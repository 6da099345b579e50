//! `svcconf audit`: what a cluster's Service networking uses that is
//! deprecated or changes in a coming release, each with the version, what
//! breaks then and the move to make. Pure: `cluster::audit` gathers the
//! [`AuditFacts`], [`audit`] judges them, reporters print the [`Audit`].
//! The versions are those kube-proxy and the API server of v1.37 state
//! themselves (their warnings, events and feature gates) and the KEPs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Dataplane;

/// How soon a finding matters, least first (`--fail-on` takes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing changes by itself; a move the operator is making will break it.
    Notice,
    /// Deprecated; no release turns it off yet.
    Deprecated,
    /// A default changes under it in a named release.
    Change,
    /// Turned off by default, or removed, in a named release.
    Removal,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Notice,
        Severity::Deprecated,
        Severity::Change,
        Severity::Removal,
    ];
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Notice => "notice",
            Severity::Deprecated => "deprecated",
            Severity::Change => "change",
            Severity::Removal => "removal",
        })
    }
}

/// The least severity that fails the audit, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    Never,
    At(Severity),
}

impl fmt::Display for FailOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailOn::Never => f.write_str("never"),
            FailOn::At(s) => s.fmt(f),
        }
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "never" {
            return Ok(FailOn::Never);
        }
        Severity::ALL
            .into_iter()
            .find(|v| v.to_string() == s)
            .map(FailOn::At)
            .ok_or_else(|| {
                format!("unknown severity {s:?}: one of never, notice, deprecated, change, removal")
            })
    }
}

impl FailOn {
    pub fn fails(self, severity: Severity) -> bool {
        matches!(self, FailOn::At(at) if severity >= at)
    }
}

/// One thing the cluster uses that changes, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The check that found it ([`CHECKS`]).
    pub check: String,
    pub severity: Severity,
    /// What uses it: `Service ns/name`, `kube-proxy on node-a, node-b`.
    pub object: String,
    /// What it uses, as the cluster shows it.
    pub uses: String,
    /// The release that changes it, and how (`deprecated in v1.36`).
    pub changes: String,
    /// What stops working then.
    pub breaks: String,
    /// The move to make.
    pub action: String,
}

/// A check of the audit and what it looks at.
#[derive(Debug, Clone, Copy)]
pub struct AuditCheck {
    pub name: &'static str,
    pub about: &'static str,
    /// The facts it needs; when one could not be read, the check did not run.
    pub needs: &'static [Fact],
    /// Its findings over facts it could read.
    pub judge: fn(&AuditFacts) -> Vec<Finding>,
}

/// What the audit reads from the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Dataplane,
    ProxyConfig,
    Services,
    EndpointSlices,
    Endpoints,
}

pub const CHECKS: [AuditCheck; 8] = [
    AuditCheck {
        name: "proxy-mode-ipvs",
        about: "kube-proxy runs (or is configured for) ipvs",
        needs: &[Fact::Dataplane, Fact::ProxyConfig],
        judge: ipvs,
    },
    AuditCheck {
        name: "proxy-mode-default",
        about: "kube-proxy runs iptables because no mode is set",
        needs: &[Fact::Dataplane, Fact::ProxyConfig],
        judge: default_mode,
    },
    AuditCheck {
        name: "localhost-nodeports",
        about: "NodePorts answer on 127.0.0.1 (iptables mode), which nftables mode does not do",
        needs: &[Fact::Dataplane, Fact::ProxyConfig, Fact::Services],
        judge: localhost_node_ports,
    },
    AuditCheck {
        name: "external-ips",
        about: "Services with spec.externalIPs",
        needs: &[Fact::Services],
        judge: external_ips,
    },
    AuditCheck {
        name: "prefer-close",
        about: "Services with trafficDistribution PreferClose",
        needs: &[Fact::Services],
        judge: prefer_close,
    },
    AuditCheck {
        name: "load-balancer-ip",
        about: "Services with spec.loadBalancerIP",
        needs: &[Fact::Services],
        judge: load_balancer_ip,
    },
    AuditCheck {
        name: "topology-aware-hints",
        about: "Services with the service.kubernetes.io/topology-aware-hints annotation",
        needs: &[Fact::Services],
        judge: topology_hints,
    },
    AuditCheck {
        name: "endpoints-v1",
        about: "v1 Endpoints written by a client rather than the endpoints controller",
        needs: &[Fact::Services, Fact::EndpointSlices, Fact::Endpoints],
        judge: endpoints_v1,
    },
];

/// kube-proxy's configuration file (ConfigMap kube-system/kube-proxy,
/// `config.conf`), where one exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `mode:` as written; `None` or empty: not set (kube-proxy defaults).
    pub mode: Option<String>,
    /// `iptables.localhostNodePorts` as written; `None`: kube-proxy's default (true).
    pub localhost_node_ports: Option<bool>,
}

/// What the audit needs of one Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    pub namespace: String,
    pub name: String,
    /// `spec.type`.
    pub type_: String,
    pub headless: bool,
    pub has_selector: bool,
    pub external_ips: Vec<String>,
    pub traffic_distribution: Option<String>,
    pub load_balancer_ip: Option<String>,
    pub annotations: Vec<String>,
    pub node_ports: Vec<i32>,
}

impl ServiceFacts {
    fn id(&self) -> String {
        format!("Service {}/{}", self.namespace, self.name)
    }
}

/// A v1 Endpoints object and who wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointsFacts {
    pub namespace: String,
    pub name: String,
    /// Labelled `endpoints.kubernetes.io/managed-by: endpoint-controller`.
    pub by_controller: bool,
    /// The field managers that wrote it.
    pub managers: Vec<String>,
}

/// An EndpointSlice the mirroring controller made from v1 Endpoints, by
/// its Service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceFacts {
    pub namespace: String,
    pub service: String,
}

/// Everything the audit reads; a fact that could not be read holds why.
#[derive(Debug, Clone)]
pub struct AuditFacts {
    pub dataplane: Result<Dataplane, String>,
    pub proxy_config: Result<Option<ProxyConfig>, String>,
    pub services: Result<Vec<ServiceFacts>, String>,
    /// The mirrored EndpointSlices only.
    pub slices: Result<Vec<SliceFacts>, String>,
    pub endpoints: Result<Vec<EndpointsFacts>, String>,
}

impl AuditFacts {
    /// Why `fact` could not be read, if it could not.
    fn unread(&self, fact: Fact) -> Option<&str> {
        match fact {
            Fact::Dataplane => self.dataplane.as_ref().err(),
            Fact::ProxyConfig => self.proxy_config.as_ref().err(),
            Fact::Services => self.services.as_ref().err(),
            Fact::EndpointSlices => self.slices.as_ref().err(),
            Fact::Endpoints => self.endpoints.as_ref().err(),
        }
        .map(String::as_str)
    }
}

/// One check's outcome: its findings, or why it could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub check: String,
    pub about: String,
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A whole audit of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    pub checks: Vec<CheckOutcome>,
    pub seconds: f64,
}

impl Audit {
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.checks.iter().flat_map(|c| c.findings.iter())
    }

    pub fn failing(&self, fail_on: FailOn) -> usize {
        self.findings()
            .filter(|f| fail_on.fails(f.severity))
            .count()
    }

    pub fn errors(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks.iter().filter(|c| c.error.is_some())
    }
}

/// Every check of [`CHECKS`] over `facts`.
pub fn audit(facts: &AuditFacts) -> Vec<CheckOutcome> {
    CHECKS
        .iter()
        .map(|check| {
            let unread: Vec<&str> = check
                .needs
                .iter()
                .filter_map(|f| facts.unread(*f))
                .collect();
            let (findings, error) = if unread.is_empty() {
                let mut findings = (check.judge)(facts);
                for f in &mut findings {
                    f.check = check.name.to_string();
                }
                (findings, None)
            } else {
                (Vec::new(), Some(unread.join("; ")))
            };
            CheckOutcome {
                check: check.name.to_string(),
                about: check.about.to_string(),
                findings,
                error,
            }
        })
        .collect()
}

const DEFAULT_ENDPOINTS: (&str, &str) = ("default", "kubernetes");
const TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";

/// A finding; its check's name is filled in by [`audit`].
fn finding(
    severity: Severity,
    object: String,
    uses: String,
    changes: &str,
    breaks: &str,
    action: &str,
) -> Finding {
    Finding {
        check: String::new(),
        severity,
        object,
        uses,
        changes: changes.to_string(),
        breaks: breaks.to_string(),
        action: action.to_string(),
    }
}

fn services(facts: &AuditFacts) -> &[ServiceFacts] {
    facts.services.as_deref().unwrap_or_default()
}

fn ipvs(facts: &AuditFacts) -> Vec<Finding> {
    let nodes = nodes_in_mode(facts, "ipvs");
    let configured = configured_mode(facts) == Some("ipvs");
    if nodes.is_empty() && !configured {
        return Vec::new();
    }
    let (object, uses) = if nodes.is_empty() {
        (
            "ConfigMap kube-system/kube-proxy".to_string(),
            "mode: ipvs (no node runs it yet: the next kube-proxy restart does)".to_string(),
        )
    } else {
        (
            format!("kube-proxy on {}", nodes.join(", ")),
            "proxy mode ipvs".to_string(),
        )
    };
    vec![finding(
        Severity::Removal,
        object,
        uses,
        "deprecated in v1.35 (KEP-5495); the KubeProxyIPVS gate turns it off by default in v1.40; removed in v1.43",
        "kube-proxy does not start in ipvs mode: no Service is programmed on the nodes",
        "switch to nftables before v1.40: svcconf migrate --to nftables (checked before and after)",
    )]
}

fn default_mode(facts: &AuditFacts) -> Vec<Finding> {
    let warned = nodes_warning(facts, "No kube-proxy mode specified");
    let unset =
        matches!(&facts.proxy_config, Ok(Some(c)) if c.mode.as_deref().is_none_or(str::is_empty));
    let iptables = nodes_in_mode(facts, "iptables");
    let nodes = if warned.is_empty() && unset {
        iptables
    } else {
        warned
    };
    if nodes.is_empty() {
        return Vec::new();
    }
    vec![finding(
        Severity::Change,
        format!("kube-proxy on {}", nodes.join(", ")),
        "proxy mode iptables, taken by default (no mode: in kube-proxy's configuration)".into(),
        "the default mode becomes nftables in v1.40 (KEP-5343)",
        "on upgrade kube-proxy switches to nftables by itself: NodePorts stop answering on 127.0.0.1, rules move to the nftables kube-proxy table",
        "set mode: nftables (svcconf migrate --to nftables) or, to stay, mode: iptables",
    )]
}

fn localhost_node_ports(facts: &AuditFacts) -> Vec<Finding> {
    let services = services(facts);
    let iptables = nodes_in_mode(facts, "iptables");
    let on = match &facts.proxy_config {
        Ok(Some(c)) => c.localhost_node_ports != Some(false),
        _ => true,
    };
    let with_ports: Vec<&ServiceFacts> = services
        .iter()
        .filter(|s| !s.node_ports.is_empty())
        .collect();
    if iptables.is_empty() || !on || with_ports.is_empty() {
        return Vec::new();
    }
    let named: Vec<String> = with_ports
        .iter()
        .take(5)
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    let more = with_ports.len().saturating_sub(named.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    vec![finding(
        Severity::Notice,
        format!("kube-proxy on {}", iptables.join(", ")),
        format!(
            "NodePorts reachable at 127.0.0.1 on every node (iptables.localhostNodePorts, on by default) for {} Services: {}{tail}",
            with_ports.len(),
            named.join(", ")
        ),
        "not in nftables mode, the default from v1.40 (only behind the alpha KubeProxyNFTablesLocalhostNodePorts gate, TCP, in v1.37)",
        "a client on a node that connects to 127.0.0.1:<nodePort> is refused after the switch",
        "have such clients use the node's own IP or the Service's ClusterIP before switching to nftables",
    )]
}

/// A deprecated-field check over every Service: `uses` says what the
/// Service uses, or `None` when it does not.
fn deprecated_per_service(
    facts: &AuditFacts,
    uses: impl Fn(&ServiceFacts) -> Option<String>,
    [changes, breaks, action]: [&str; 3],
) -> Vec<Finding> {
    services(facts)
        .iter()
        .filter_map(|s| {
            let used = uses(s)?;
            Some(finding(
                Severity::Deprecated,
                s.id(),
                used,
                changes,
                breaks,
                action,
            ))
        })
        .collect()
}

fn external_ips(facts: &AuditFacts) -> Vec<Finding> {
    deprecated_per_service(
        facts,
        |s| {
            (!s.external_ips.is_empty() && !s.headless && s.type_ != "ExternalName")
                .then(|| format!("spec.externalIPs {}", s.external_ips.join(", ")))
        },
        [
            "deprecated in v1.36 (KEP-5707, CVE-2020-8554); kube-proxy's AllowServiceExternalIPs gate is to stop programming them by default",
            "traffic to the external IPs is no longer routed to the Service",
            "use a LoadBalancer Service (its ingress IP), or a Gateway",
        ],
    )
}

fn prefer_close(facts: &AuditFacts) -> Vec<Finding> {
    deprecated_per_service(
        facts,
        |s| {
            (s.traffic_distribution.as_deref() == Some("PreferClose"))
                .then(|| "spec.trafficDistribution: PreferClose".to_string())
        },
        [
            "deprecated in v1.35 (KEP-3015): an alias of PreferSameZone",
            "nothing yet: the API warns on every write",
            "write trafficDistribution: PreferSameZone (same behaviour)",
        ],
    )
}

fn load_balancer_ip(facts: &AuditFacts) -> Vec<Finding> {
    deprecated_per_service(
        facts,
        |s| {
            s.load_balancer_ip
                .as_deref()
                .filter(|ip| !ip.is_empty())
                .map(|ip| format!("spec.loadBalancerIP {ip}"))
        },
        [
            "deprecated in v1.24: its meaning varies by implementation and it has no dual-stack form",
            "implementations may ignore it: the Service gets another address",
            "use your load balancer's annotation (MetalLB: metallb.io/loadBalancerIPs)",
        ],
    )
}

fn topology_hints(facts: &AuditFacts) -> Vec<Finding> {
    deprecated_per_service(
        facts,
        |s| {
            s.annotations
                .iter()
                .any(|a| a == TOPOLOGY_HINTS)
                .then(|| format!("annotation {TOPOLOGY_HINTS}"))
        },
        [
            "deprecated in v1.27 for service.kubernetes.io/topology-mode",
            "nothing yet: the API warns on every write",
            "use spec.trafficDistribution: PreferSameZone (or the topology-mode annotation)",
        ],
    )
}

/// Endpoints a client writes: nothing but the mirroring controller
/// carries them to the EndpointSlices that kube-proxy and DNS read.
fn endpoints_v1(facts: &AuditFacts) -> Vec<Finding> {
    let services = services(facts);
    let (Ok(endpoints), Ok(slices)) = (&facts.endpoints, &facts.slices) else {
        return Vec::new();
    };
    endpoints
        .iter()
        .filter(|e| !e.by_controller && (e.namespace.as_str(), e.name.as_str()) != DEFAULT_ENDPOINTS)
        .map(|e| {
            let service = services
                .iter()
                .find(|s| s.namespace == e.namespace && s.name == e.name);
            let mirrored = slices
                .iter()
                .any(|s| s.namespace == e.namespace && s.service == e.name);
            let writers = if e.managers.is_empty() {
                "an unnamed client".to_string()
            } else {
                e.managers.join(", ")
            };
            let breaks = match (service, mirrored) {
                (Some(s), true) if !s.has_selector => format!(
                    "Service {}/{} has endpoints only through the EndpointSlice mirroring controller: without it (as upstream's conformance job runs) the Service has none",
                    e.namespace, e.name
                ),
                (Some(s), false) if !s.has_selector => format!(
                    "no EndpointSlice is mirrored from it: Service {}/{} has no endpoints for kube-proxy and DNS now",
                    e.namespace, e.name
                ),
                (Some(_), _) => "nothing reads it: the Service's selector feeds its EndpointSlices".into(),
                (None, _) => "nothing reads it: no Service of that name".into(),
            };
            finding(
                Severity::Deprecated,
                format!("Endpoints {}/{}", e.namespace, e.name),
                format!("v1 Endpoints written by {writers}"),
                "the v1 Endpoints API is deprecated in v1.33 (KEP-4974); since v1.34 conformance has proxies read EndpointSlices only",
                &breaks,
                "write discovery.k8s.io/v1 EndpointSlices (label kubernetes.io/service-name) instead",
            )
        })
        .collect()
}

fn nodes_in_mode(facts: &AuditFacts, mode: &str) -> Vec<String> {
    let Ok(dataplane) = &facts.dataplane else {
        return Vec::new();
    };
    dataplane
        .nodes
        .iter()
        .filter(|n| n.effective_mode() == Some(mode))
        .map(|n| n.node.clone())
        .collect()
}

fn nodes_warning(facts: &AuditFacts, text: &str) -> Vec<String> {
    let Ok(dataplane) = &facts.dataplane else {
        return Vec::new();
    };
    dataplane
        .nodes
        .iter()
        .filter(|n| n.warnings.iter().any(|w| w.contains(text)))
        .map(|n| n.node.clone())
        .collect()
}

fn configured_mode(facts: &AuditFacts) -> Option<&str> {
    match &facts.proxy_config {
        Ok(Some(c)) => c.mode.as_deref().filter(|m| !m.is_empty()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeDataplane;

    fn node(name: &str, mode: &str, warnings: &[&str]) -> NodeDataplane {
        NodeDataplane {
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            ..NodeDataplane::synced_kube_proxy(name, mode)
        }
    }

    fn facts(nodes: Vec<NodeDataplane>, config: Option<ProxyConfig>) -> AuditFacts {
        AuditFacts {
            dataplane: Ok(Dataplane {
                nodes,
                seconds: 0.1,
            }),
            proxy_config: Ok(config),
            services: Ok(Vec::new()),
            slices: Ok(Vec::new()),
            endpoints: Ok(Vec::new()),
        }
    }

    fn found<'a>(outcomes: &'a [CheckOutcome], check: &str) -> &'a [Finding] {
        &outcomes.iter().find(|c| c.check == check).unwrap().findings
    }

    #[test]
    fn a_cluster_with_nothing_deprecated_has_no_finding() {
        let config = ProxyConfig {
            mode: Some("nftables".into()),
            localhost_node_ports: None,
        };
        let outcomes = audit(&facts(vec![node("a", "nftables", &[])], Some(config)));
        assert_eq!(outcomes.len(), CHECKS.len());
        assert!(outcomes
            .iter()
            .all(|c| c.findings.is_empty() && c.error.is_none()));
    }

    #[test]
    fn ipvs_on_any_node_or_in_the_config_is_a_removal() {
        let outcomes = audit(&facts(
            vec![node("a", "ipvs", &[]), node("b", "ipvs", &[])],
            None,
        ));
        let ipvs = found(&outcomes, "proxy-mode-ipvs");
        assert_eq!(ipvs.len(), 1);
        assert_eq!(ipvs[0].severity, Severity::Removal);
        assert_eq!(ipvs[0].object, "kube-proxy on a, b");
        let config = ProxyConfig {
            mode: Some("ipvs".into()),
            localhost_node_ports: None,
        };
        let outcomes = audit(&facts(vec![node("a", "nftables", &[])], Some(config)));
        assert_eq!(
            found(&outcomes, "proxy-mode-ipvs")[0].object,
            "ConfigMap kube-system/kube-proxy"
        );
    }

    #[test]
    fn iptables_by_default_is_found_by_the_warning_or_an_unset_mode() {
        let warning = "No kube-proxy mode specified: defaulting to 'iptables'. Note that in Kubernetes 1.40 the default mode will switch to 'nftables'.";
        let outcomes = audit(&facts(
            vec![
                node("a", "iptables", &[warning]),
                node("b", "iptables", &[]),
            ],
            None,
        ));
        let default = found(&outcomes, "proxy-mode-default");
        assert_eq!(default[0].object, "kube-proxy on a");
        assert_eq!(default[0].severity, Severity::Change);
        let unset = ProxyConfig {
            mode: Some(String::new()),
            localhost_node_ports: None,
        };
        let outcomes = audit(&facts(vec![node("a", "iptables", &[])], Some(unset)));
        assert_eq!(found(&outcomes, "proxy-mode-default").len(), 1);
        let set = ProxyConfig {
            mode: Some("iptables".into()),
            localhost_node_ports: None,
        };
        let outcomes = audit(&facts(vec![node("a", "iptables", &[])], Some(set)));
        assert!(found(&outcomes, "proxy-mode-default").is_empty());
    }

    #[test]
    fn service_fields_are_found_per_service() {
        let mut f = facts(vec![node("a", "iptables", &[])], None);
        let svc = |name: &str| ServiceFacts {
            namespace: "ns".into(),
            name: name.into(),
            type_: "ClusterIP".into(),
            has_selector: true,
            ..Default::default()
        };
        f.services = Ok(vec![
            ServiceFacts {
                external_ips: vec!["192.0.2.1".into()],
                ..svc("ext")
            },
            ServiceFacts {
                external_ips: vec!["192.0.2.2".into()],
                headless: true,
                ..svc("ignored")
            },
            ServiceFacts {
                traffic_distribution: Some("PreferClose".into()),
                ..svc("close")
            },
            ServiceFacts {
                traffic_distribution: Some("PreferSameZone".into()),
                ..svc("zone")
            },
            ServiceFacts {
                type_: "LoadBalancer".into(),
                load_balancer_ip: Some("192.0.2.3".into()),
                node_ports: vec![30001],
                ..svc("lb")
            },
            ServiceFacts {
                annotations: vec![TOPOLOGY_HINTS.into()],
                ..svc("hints")
            },
        ]);
        let outcomes = audit(&f);
        let objects = |check| -> Vec<String> {
            found(&outcomes, check)
                .iter()
                .map(|f| f.object.clone())
                .collect()
        };
        assert_eq!(objects("external-ips"), vec!["Service ns/ext"]);
        assert_eq!(objects("prefer-close"), vec!["Service ns/close"]);
        assert_eq!(objects("load-balancer-ip"), vec!["Service ns/lb"]);
        assert_eq!(objects("topology-aware-hints"), vec!["Service ns/hints"]);
        let localhost = found(&outcomes, "localhost-nodeports");
        assert_eq!(localhost.len(), 1);
        assert!(
            localhost[0].uses.contains("1 Services: ns/lb"),
            "{}",
            localhost[0].uses
        );
        // Off in kube-proxy's configuration: nothing to lose.
        f.proxy_config = Ok(Some(ProxyConfig {
            mode: Some("iptables".into()),
            localhost_node_ports: Some(false),
        }));
        assert!(found(&audit(&f), "localhost-nodeports").is_empty());
    }

    #[test]
    fn endpoints_a_client_writes_are_found_and_a_mirrored_only_service_named() {
        let mut f = facts(vec![node("a", "nftables", &[])], None);
        f.services = Ok(vec![ServiceFacts {
            namespace: "ns".into(),
            name: "db".into(),
            type_: "ClusterIP".into(),
            ..Default::default()
        }]);
        f.endpoints = Ok(vec![
            EndpointsFacts {
                namespace: "ns".into(),
                name: "db".into(),
                by_controller: false,
                managers: vec!["kubectl-client-side-apply".into()],
            },
            EndpointsFacts {
                namespace: "ns".into(),
                name: "web".into(),
                by_controller: true,
                managers: vec!["kube-controller-manager".into()],
            },
            EndpointsFacts {
                namespace: "default".into(),
                name: "kubernetes".into(),
                by_controller: false,
                managers: vec!["kube-apiserver".into()],
            },
        ]);
        f.slices = Ok(vec![SliceFacts {
            namespace: "ns".into(),
            service: "db".into(),
        }]);
        let outcomes = audit(&f);
        let v1 = found(&outcomes, "endpoints-v1");
        assert_eq!(v1.len(), 1);
        assert_eq!(v1[0].object, "Endpoints ns/db");
        assert!(v1[0].uses.ends_with("kubectl-client-side-apply"));
        assert!(v1[0]
            .breaks
            .contains("only through the EndpointSlice mirroring"));
    }

    #[test]
    fn a_check_whose_facts_could_not_be_read_did_not_run() {
        let mut f = facts(vec![], None);
        f.endpoints = Err("missing permission: verb list on resource endpoints".into());
        let outcomes = audit(&f);
        let v1 = outcomes.iter().find(|c| c.check == "endpoints-v1").unwrap();
        assert_eq!(
            v1.error.as_deref(),
            Some("missing permission: verb list on resource endpoints")
        );
        assert_eq!(outcomes.iter().filter(|c| c.error.is_some()).count(), 1);
    }

    #[test]
    fn fail_on_takes_a_severity_or_never() {
        assert_eq!("never".parse::<FailOn>(), Ok(FailOn::Never));
        let deprecated: FailOn = "deprecated".parse().unwrap();
        assert!(!deprecated.fails(Severity::Notice));
        assert!(deprecated.fails(Severity::Deprecated));
        assert!(deprecated.fails(Severity::Removal));
        assert!(!FailOn::Never.fails(Severity::Removal));
        assert!("fatal"
            .parse::<FailOn>()
            .unwrap_err()
            .contains("one of never"));
    }
}

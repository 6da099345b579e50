//! The template language of case files: `${clusterIP:web}`,
//! `${nodeIP:without=app=web}`, ... in probe targets, expected answers,
//! fixtures and step patches; the facts they render from; and the pods and
//! nodes those facts name. Pure: resolving a placeholder against a cluster
//! is `resolve`'s job, judging an observation `verdict`'s.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::model::SliceShare;

/// A pod as seen when the probe ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFact {
    pub name: String,
    pub ip: String,
    pub node: String,
}

/// What the verdict compares against besides the observation itself: the
/// ready pods behind each label selector the assertions mention, and the
/// values of the run-time placeholders.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub ready_pods: BTreeMap<String, Vec<PodFact>>,
    pub vars: BTreeMap<String, String>,
    /// The EndpointSlices of each Service an assertion names.
    pub endpoint_slices: BTreeMap<String, Vec<SliceFact>>,
    /// Each node's `topology.kubernetes.io/zone` (`None`: no such label),
    /// when an assertion compares zones.
    pub zones: BTreeMap<String, Option<String>>,
}

/// One EndpointSlice as the verdict reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceFact {
    pub name: String,
    pub endpoints: Vec<EndpointFact>,
}

/// One endpoint of a slice: its first address, whether it is ready, and the
/// pod it points to (`targetRef`), when it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFact {
    pub address: String,
    pub ready: bool,
    pub pod: Option<String>,
}

impl Facts {
    /// Replaces `${key}` with its value; an unknown key stays as written, so
    /// a comparison against it fails visibly.
    pub fn render(&self, template: &str) -> String {
        let mut out = template.to_string();
        for (key, value) in &self.vars {
            out = out.replace(&format!("${{{key}}}"), value);
        }
        out
    }

    /// Renders a probe's `host:port` target, an IPv6 host in brackets.
    pub fn render_target(&self, target: &str) -> String {
        crate::model::bracket_host(&self.render(target))
    }

    /// Renders each template; one that renders to a comma-separated list
    /// (a multi-valued placeholder such as `${podIPs:app=web}`) contributes
    /// each of its items. Empty items are dropped, so "no pods" is an empty
    /// set, not a set holding "".
    pub fn render_set(&self, templates: &[String]) -> BTreeSet<String> {
        templates
            .iter()
            .flat_map(|t| {
                self.render(t)
                    .split(',')
                    .map(|i| i.trim().to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|i| !i.is_empty())
            .collect()
    }
}

/// A run-time value a template refers to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Placeholder {
    /// `${clusterIP:<service>}` in the case's namespace, or
    /// `${clusterIP:<namespace>/<service>}` (e.g. `default/kubernetes`).
    ClusterIp {
        namespace: Option<String>,
        service: String,
    },
    /// `${podIPs:<label selector>}`: the ready pods' IPs, comma-separated.
    PodIps { selector: String },
    /// `${allPodIPs:<label selector>}`: every running pod's IP, ready or
    /// not (what `publishNotReadyAddresses` publishes).
    AllPodIps { selector: String },
    /// `${nodeIP:<pick>}`: a node's InternalIP.
    NodeIp(NodePick),
    /// `${spareIP:<pick>}`: an unused address beside that node's, for the
    /// harness to place on it (externalIPs).
    SpareIp(NodePick),
    /// `${nodePort:<service>}`: the first port's nodePort.
    NodePort { service: String },
    /// `${healthCheckNodePort:<service>}` (externalTrafficPolicy Local).
    HealthCheckNodePort { service: String },
    /// `${containerIP:<name>}`: the address of a container a step started.
    ContainerIp { name: String },
    /// `${loadBalancerIP:<service>}`: the Service's EXTERNAL-IP.
    LoadBalancerIp { service: String },
    /// `${serviceCIDRIP:<n>}`: the n-th address of the Service range a
    /// `serviceCIDR` step added (`1` is the first allocatable).
    ServiceCidrIp(u32),
    /// `${documentationIP:<n>}`: the n-th address of the run family's
    /// documentation range (192.0.2.n, 2001:db8::n in hex), which no pod has.
    DocumentationIp(u8),
    /// `${maxEndpointsPerSlice:<percent>%}` (or `...%+<n>`): that share of
    /// the cluster's EndpointSlice size limit, rounded up (a sharding case's
    /// replicas).
    MaxEndpointsPerSlice(SliceShare),
}

/// Which node a `${nodeIP:...}` means. Nodes are taken in name order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodePick {
    /// `${nodeIP:0}`: the n-th node.
    Index(usize),
    /// `${nodeIP:with=<selector>}`: the first node running a ready pod
    /// matching the selector.
    With(String),
    /// `${nodeIP:without=<selector>}`: the first node running none.
    Without(String),
    /// `${nodeIP:hosting=<selector>}`: the first node running a pod
    /// matching the selector, ready or not (a terminating pod counts).
    Hosting(String),
    /// `${nodeIP:each}` in a check's probe: the check runs once per node,
    /// each time with that node's address ([`each_node`]).
    Each,
}

impl NodePick {
    /// `0`, `with=<selector>` or `without=<selector>`.
    pub fn parse(spec: &str) -> Option<NodePick> {
        match (spec.parse::<usize>(), spec.split_once('=')) {
            (Ok(i), _) => Some(NodePick::Index(i)),
            _ if spec == "each" => Some(NodePick::Each),
            (_, Some(("without", sel))) => Some(NodePick::Without(sel.to_string())),
            (_, Some(("with", sel))) => Some(NodePick::With(sel.to_string())),
            (_, Some(("hosting", sel))) => Some(NodePick::Hosting(sel.to_string())),
            _ => None,
        }
    }

    fn key(&self) -> String {
        match self {
            NodePick::Index(i) => i.to_string(),
            NodePick::With(sel) => format!("with={sel}"),
            NodePick::Without(sel) => format!("without={sel}"),
            NodePick::Hosting(sel) => format!("hosting={sel}"),
            NodePick::Each => "each".into(),
        }
    }

    /// Picks from `nodes` (name, InternalIP; in name order) given the nodes
    /// the selector's ready pods run on; the error says what was missing.
    pub fn pick<'a>(
        &self,
        nodes: &'a [(String, String)],
        pod_nodes: &std::collections::BTreeSet<String>,
    ) -> Result<&'a (String, String), String> {
        let found = match self {
            NodePick::Index(i) => nodes.get(*i),
            NodePick::With(_) | NodePick::Hosting(_) => {
                nodes.iter().find(|(n, _)| pod_nodes.contains(n))
            }
            NodePick::Without(_) => nodes.iter().find(|(n, _)| !pod_nodes.contains(n)),
            NodePick::Each => None,
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
            let what = match self {
                NodePick::Index(i) => format!("node #{i}"),
                NodePick::With(sel) => format!("node with ready pods {sel}"),
                NodePick::Without(sel) => format!("node without ready pods {sel}"),
                NodePick::Hosting(sel) => format!("node running pods {sel}"),
                NodePick::Each => format!(
                    "one node for {EACH_NODE_IP} (it belongs in a check's probe, which then runs once per node)"
                ),
            };
            format!(
                "found no {what} among [{}] (pods on [{}])",
                names.join(", "),
                pod_nodes.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// The placeholder that makes a check one per node.
pub const EACH_NODE_IP: &str = "${nodeIP:each}";

/// `check` once per node of a cluster of `nodes` when its probe names
/// [`EACH_NODE_IP`] (the n-th named `<name>-node-<n>`, sending to
/// `${nodeIP:<n>}`), else as it is: "every node" stays every node on a
/// cluster of any size. Never no check: with no node counted, the one for
/// node 0 fails to resolve and says so.
pub fn each_node(check: &crate::model::Check, nodes: usize) -> Vec<crate::model::Check> {
    let probe = serde_json::to_string(&check.probe).expect("a probe serializes");
    if !probe.contains(EACH_NODE_IP) {
        return vec![check.clone()];
    }
    (0..nodes.max(1))
        .map(|i| {
            // The placeholder sits inside a JSON string and its replacement
            // has no character JSON escapes: the probe reads back.
            let probe = probe.replace(EACH_NODE_IP, &format!("${{nodeIP:{i}}}"));
            crate::model::Check {
                name: format!("{}-node-{i}", check.name),
                probe: serde_json::from_str(&probe).expect("a probe with a node index reads back"),
                ..check.clone()
            }
        })
        .collect()
}

impl Placeholder {
    /// `${<name>:<argument>}` read back; `None` for a name that is not a
    /// placeholder's. An unreadable node pick names no node: resolving it
    /// fails with the list of nodes there are.
    pub fn parse(name: &str, arg: &str) -> Option<Placeholder> {
        let service = || arg.to_string();
        let pick = || NodePick::parse(arg).unwrap_or(NodePick::Index(usize::MAX));
        Some(match name {
            "clusterIP" => match arg.split_once('/') {
                Some((ns, svc)) => Placeholder::ClusterIp {
                    namespace: Some(ns.to_string()),
                    service: svc.to_string(),
                },
                None => Placeholder::ClusterIp {
                    namespace: None,
                    service: service(),
                },
            },
            "podIPs" => Placeholder::PodIps {
                selector: service(),
            },
            "allPodIPs" => Placeholder::AllPodIps {
                selector: service(),
            },
            "nodeIP" => Placeholder::NodeIp(pick()),
            "spareIP" => Placeholder::SpareIp(pick()),
            "nodePort" => Placeholder::NodePort { service: service() },
            "healthCheckNodePort" => Placeholder::HealthCheckNodePort { service: service() },
            "containerIP" => Placeholder::ContainerIp { name: service() },
            "loadBalancerIP" => Placeholder::LoadBalancerIp { service: service() },
            // An unreadable index asks for an address no range has.
            "serviceCIDRIP" => Placeholder::ServiceCidrIp(arg.parse().unwrap_or(0)),
            // An unreadable index stays as written, as an unknown name does.
            "documentationIP" => Placeholder::DocumentationIp(arg.parse().ok()?),
            "maxEndpointsPerSlice" => Placeholder::MaxEndpointsPerSlice(SliceShare::parse(arg)?),
            _ => return None,
        })
    }

    /// The key in [`Facts::vars`] (what sits between `${` and `}`).
    pub fn key(&self) -> String {
        let (name, arg) = match self {
            Placeholder::ClusterIp {
                namespace: Some(ns),
                service,
            } => ("clusterIP", format!("{ns}/{service}")),
            Placeholder::ClusterIp {
                namespace: None,
                service,
            } => ("clusterIP", service.clone()),
            Placeholder::PodIps { selector } => ("podIPs", selector.clone()),
            Placeholder::AllPodIps { selector } => ("allPodIPs", selector.clone()),
            Placeholder::NodeIp(pick) => ("nodeIP", pick.key()),
            Placeholder::SpareIp(pick) => ("spareIP", pick.key()),
            Placeholder::NodePort { service } => ("nodePort", service.clone()),
            Placeholder::HealthCheckNodePort { service } => {
                ("healthCheckNodePort", service.clone())
            }
            Placeholder::ContainerIp { name } => ("containerIP", name.clone()),
            Placeholder::LoadBalancerIp { service } => ("loadBalancerIP", service.clone()),
            Placeholder::ServiceCidrIp(n) => ("serviceCIDRIP", n.to_string()),
            Placeholder::DocumentationIp(n) => ("documentationIP", n.to_string()),
            Placeholder::MaxEndpointsPerSlice(share) => ("maxEndpointsPerSlice", share.to_string()),
        };
        format!("{name}:{arg}")
    }
}

/// Every placeholder the templates use, once each (`${namespace}` is
/// always known and not listed; an unknown name stays as written, so a
/// comparison against it fails visibly).
pub fn placeholders(templates: &[String]) -> BTreeSet<Placeholder> {
    let re = regex::Regex::new(r"\$\{([A-Za-z]+):([^}]+)\}").expect("valid regex");
    templates
        .iter()
        .flat_map(|t| {
            re.captures_iter(t)
                .filter_map(|c| Placeholder::parse(&c[1], &c[2]))
                .collect::<Vec<_>>()
        })
        .collect()
}
/// A stable hash of a case's namespace (FNV-1a: the same across runs and
/// Rust versions, unlike `DefaultHasher`), to keep what concurrent cases
/// pick from one host's space apart (spare addresses, source ports).
pub fn namespace_hash(namespace: &str) -> u32 {
    namespace.bytes().fold(0x811c_9dc5_u32, |h, byte| {
        (h ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The local port a UDP check declared as `sourcePort` really sends from:
/// offset per case namespace by up to 2000, so the concurrent runs of a case
/// (plain and sabotaged, and other clusters' from the same harness process)
/// never share a port, while every check of one run shares one flow.
pub fn source_port(declared: u16, facts: &Facts) -> u16 {
    let namespace = facts.vars.get("namespace").map_or("", String::as_str);
    declared.saturating_add((namespace_hash(namespace) % 2000) as u16)
}

/// Every string in `value`, for placeholder lookup.
pub fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// `value` with every string rendered. A string that is one placeholder
/// alone and renders to a whole number becomes that number
/// (`replicas: "${maxEndpointsPerSlice:120%}"`), as the API wants it.
pub fn render_json(value: &Value, facts: &Facts) -> Value {
    match value {
        Value::String(s) => {
            let rendered = facts.render(s);
            let one_placeholder = s.starts_with("${") && s.find('}') == Some(s.len() - 1);
            match rendered.parse::<u64>() {
                Ok(n) if one_placeholder && rendered != *s => Value::from(n),
                _ => Value::String(rendered),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render_json(v, facts)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_json(v, facts)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `${maxEndpointsPerSlice:N%}` of `templates` on a cluster whose
/// EndpointSlices hold at most `max` endpoints.
pub fn slice_share_vars(max: u32, templates: &[String]) -> BTreeMap<String, String> {
    placeholders(templates)
        .into_iter()
        .filter_map(|placeholder| match placeholder {
            Placeholder::MaxEndpointsPerSlice(share) => {
                Some((placeholder.key(), share.of(max).to_string()))
            }
            _ => None,
        })
        .collect()
}

/// `objects` with their shares of the EndpointSlice size limit `max`
/// filled in (replicas), to count their pods before a namespace exists.
pub fn sized(objects: &[Value], max: u32) -> Vec<Value> {
    render_objects(objects, |templates| slice_share_vars(max, templates))
}

/// `objects` rendered with the values `vars` gives for the placeholders of
/// their strings.
pub fn render_objects(
    objects: &[Value],
    vars: impl FnOnce(&[String]) -> BTreeMap<String, String>,
) -> Vec<Value> {
    let mut templates = Vec::new();
    objects.iter().for_each(|o| strings(o, &mut templates));
    let facts = Facts {
        vars: vars(&templates),
        ..Default::default()
    };
    objects.iter().map(|o| render_json(o, &facts)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_sent_to_each_node_is_one_check_per_node() {
        let check: crate::model::Check = serde_saphyr::from_str(
            "{name: every-node, from: external, probe: {http: {target: \"${nodeIP:each}:${nodePort:web}\"}}, expect: [allOk]}",
        )
        .unwrap();
        let each = each_node(&check, 2);
        let named: Vec<(&str, String)> = each
            .iter()
            .map(|c| (c.name.as_str(), serde_json::to_string(&c.probe).unwrap()))
            .collect();
        assert_eq!(named.len(), 2);
        assert_eq!(named[1].0, "every-node-node-1");
        assert!(
            named[1].1.contains("${nodeIP:1}:${nodePort:web}"),
            "{named:?}"
        );
        assert_eq!(each[0].expect, check.expect);
        // Any other check stays one.
        let one: crate::model::Check = serde_saphyr::from_str(
            "{name: n, from: external, probe: {http: {target: \"${nodeIP:0}:80\"}}, expect: [allOk]}",
        )
        .unwrap();
        let kept: Vec<String> = each_node(&one, 3).into_iter().map(|c| c.name).collect();
        assert_eq!(kept, ["n"]);
        // No node counted still leaves a check to run (and fail).
        assert_eq!(each_node(&check, 0).len(), 1);
        // Rendered unexpanded, it says where it belongs.
        let nodes = [("n0".to_string(), "10.0.0.1".to_string())];
        let err = NodePick::Each
            .pick(&nodes, &Default::default())
            .unwrap_err();
        assert!(err.contains("runs once per node"), "{err}");
    }

    #[test]
    fn finds_placeholders_with_their_keys() {
        let found = placeholders(&[
            "${clusterIP:web}:80".into(),
            "${clusterIP:default/kubernetes}".into(),
            "${podIPs:app=web,tier in (a)} ${clusterIP:web}".into(),
            "${namespace}".into(),
        ]);
        let keys: Vec<String> = found.iter().map(Placeholder::key).collect();
        assert_eq!(
            keys,
            [
                "clusterIP:web",
                "clusterIP:default/kubernetes",
                "podIPs:app=web,tier in (a)"
            ]
        );
    }

    #[test]
    fn node_placeholders_pick_by_index_and_by_pods() {
        let found = placeholders(&[
            "${nodeIP:1}:${nodePort:web}".into(),
            "${nodeIP:with=app=web}:${healthCheckNodePort:web}".into(),
            "${nodeIP:without=app=web}".into(),
            "${nodeIP:hosting=app=web}".into(),
            "${allPodIPs:app=web}".into(),
        ]);
        let keys: Vec<String> = found.iter().map(Placeholder::key).collect();
        assert_eq!(
            keys,
            [
                "allPodIPs:app=web",
                "nodeIP:1",
                "nodeIP:with=app=web",
                "nodeIP:without=app=web",
                "nodeIP:hosting=app=web",
                "nodePort:web",
                "healthCheckNodePort:web"
            ]
        );
        let nodes: Vec<(String, String)> = [
            ("cp", "172.18.0.4"),
            ("w1", "172.18.0.2"),
            ("w2", "172.18.0.3"),
        ]
        .iter()
        .map(|(n, ip)| (n.to_string(), ip.to_string()))
        .collect();
        let on: BTreeSet<String> = ["w2".to_string()].into();
        assert_eq!(
            NodePick::Index(1).pick(&nodes, &on).unwrap().1,
            "172.18.0.2"
        );
        assert_eq!(
            NodePick::With("app=web".into())
                .pick(&nodes, &on)
                .unwrap()
                .0,
            "w2"
        );
        assert_eq!(
            NodePick::Without("app=web".into())
                .pick(&nodes, &on)
                .unwrap()
                .0,
            "cp"
        );
        let everywhere: BTreeSet<String> =
            ["cp", "w1", "w2"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            NodePick::Without("app=web".into())
                .pick(&nodes, &everywhere)
                .unwrap_err(),
            "found no node without ready pods app=web among [cp, w1, w2] (pods on [cp, w1, w2])"
        );
    }

    #[test]
    fn patches_render_every_string() {
        let facts = Facts {
            vars: [("spareIP:1".to_string(), "172.18.250.3".to_string())].into(),
            ..Default::default()
        };
        let merge =
            serde_json::json!({"spec": {"externalIPs": ["${spareIP:1}"], "ports": [{"port": 80}]}});
        let mut found = Vec::new();
        strings(&merge, &mut found);
        assert_eq!(found, ["${spareIP:1}"]);
        assert_eq!(
            render_json(&merge, &facts),
            serde_json::json!({"spec": {"externalIPs": ["172.18.250.3"], "ports": [{"port": 80}]}})
        );
        assert!(placeholders(&["${frobnicate:x}".into()]).is_empty());
    }

    #[test]
    fn slice_shares_render_as_numbers_where_they_stand_alone() {
        let fixture = serde_json::json!({
            "spec": {"replicas": "${maxEndpointsPerSlice:120%}"},
            "metadata": {"annotations": {"a": "of ${maxEndpointsPerSlice:30%}"}}
        });
        // 20 per slice: 24 and 6; the default 100: 120.
        let small = sized(std::slice::from_ref(&fixture), 20);
        assert_eq!(small[0]["spec"]["replicas"], 24);
        assert_eq!(small[0]["metadata"]["annotations"]["a"], "of 6");
        assert_eq!(sized(&[fixture], 100)[0]["spec"]["replicas"], 120);
        // 30% of 7 is 2.1: rounded up; then one more.
        assert_eq!(SliceShare::parse("30%+1").map(|s| s.of(7)), Some(4));
        assert!(placeholders(&["${maxEndpointsPerSlice:many}".into()]).is_empty());
    }
}

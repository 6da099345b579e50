//! One check of a case: the facts its probe and assertions name, the client
//! its placement picks, the probe run there, the verdict; on a mismatch, the
//! proxy rules of the nodes involved.

use std::collections::BTreeSet;

use super::case::CaseRunner;
use super::cluster_error_chain;
use crate::cluster;
use crate::kube::jig::Jig;
use crate::model::{
    Assertion, ClientPlacement, IpFamily, ObjectRef, Observation, Probe, ProbeReport,
    WarningsReport,
};
use crate::probe;
use crate::resolve;
use crate::template::{Facts, PodFact};
use crate::verdict;

/// Why a check has no observation.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum CheckError {
    /// No client pod where the placement asks for one, among Ready pods that
    /// have been placed: only their moving could heal it.
    NoClient(String),
    /// The API, a probe, a fact: another attempt may see otherwise.
    Other(String),
}

impl From<String> for CheckError {
    fn from(message: String) -> Self {
        CheckError::Other(message)
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::NoClient(m) | CheckError::Other(m) => f.write_str(m),
        }
    }
}

impl CaseRunner {
    /// Runs one check; `Ok` holds the mismatches (empty: it passed).
    pub(super) async fn check(
        &self,
        jig: &Jig,
        check: &crate::model::Check,
        evidence: &mut Vec<String>,
    ) -> Result<Vec<String>, CheckError> {
        let in_family = crate::model::Check {
            probe: check.probe.in_family(jig.family),
            ..check.clone()
        };
        let check = &in_family;
        let version = &self.cluster.info.kubernetes_version;
        if let Some(why) = crate::model::before_release(version, check.since.as_deref()) {
            let line = format!("check {} not run: {why}", check.name);
            if !evidence.contains(&line) {
                evidence.push(line);
            }
            return Ok(Vec::new());
        }
        let mode = self.cluster.info.mode;
        let assertions = check.expectations(mode);
        if let Some(why) =
            foreign_service_lacks_family(jig, &templates(&check.probe, assertions)).await
        {
            evidence.push(format!(
                "check {} not run in {}: {why}",
                check.name, jig.family
            ));
            return Ok(Vec::new());
        }
        let facts = self
            .facts(jig, &check.probe, assertions, &check.from)
            .await?;
        let obs = if let Probe::ApiWarnings(object) = &check.probe {
            self.api_warnings(jig, object, &facts).await?
        } else {
            self.probe(jig, check, &facts).await?
        };
        evidence.push(format!(
            "check {} ({}) from {} on {} ({}): {}\n{}",
            check.name,
            check.probe.describe(),
            obs.client_pod,
            obs.client_node,
            obs.client_ip,
            obs.command.join(" "),
            obs.raw
        ));
        let mismatches: Vec<String> = assertions
            .iter()
            .filter_map(|a| verdict::judge(a, &obs, &facts).err())
            .collect();
        if !mismatches.is_empty() && check.from != ClientPlacement::ApiServer {
            let nodes = self.nodes_involved(check, &obs.client_node, &facts).await;
            if let Some(docker) = &self.cluster.docker {
                for node in &nodes {
                    evidence.push(cluster::proxy_rules(docker, node, mode, &jig.namespace).await);
                }
            }
            self.involve(&jig.namespace, nodes);
        }
        Ok(mismatches)
    }

    /// Runs the check's probe from its placement: this process, a fresh
    /// container, or a pod.
    async fn probe(
        &self,
        jig: &Jig,
        check: &crate::model::Check,
        facts: &Facts,
    ) -> Result<Observation, CheckError> {
        if check.from == ClientPlacement::External {
            probe::external::run(&check.probe, facts).await
        } else if check.from == ClientPlacement::ExternalContainer {
            let docker = self.cluster.docker.as_ref().ok_or_else(|| {
                "a check from a fresh container outside the cluster needs docker (kind clusters)"
                    .to_string()
            })?;
            let image = self
                .fixtures
                .image_map()
                .resolve(crate::fixture::PROBE_IMAGE);
            probe::external::run_in_container(docker, image, &check.probe, facts).await
        } else {
            let from = self.client_for(jig, &check.from, facts).await?;
            // A pod of the case's own is in the case's namespace, wherever
            // the client pods run.
            let own;
            let jig = match &check.from {
                ClientPlacement::Pod(_) => {
                    own = jig.in_namespace(jig.namespace.clone());
                    &own
                }
                _ => jig,
            };
            probe::run_in_pod(jig, &from, &check.probe, facts).await
        }
        .map_err(|e| CheckError::Other(cluster_error_chain(&e)))
    }

    /// What the API server answers a dry-run update of `object` with.
    async fn api_warnings(
        &self,
        jig: &Jig,
        object: &ObjectRef,
        facts: &Facts,
    ) -> Result<Observation, String> {
        let name = facts.render(&object.name);
        let warnings = self
            .applier
            .update_warnings(&jig.namespace, &object.api_version, &object.kind, &name)
            .await
            .map_err(|e| cluster_error_chain(&e))?;
        let report = WarningsReport {
            object: format!("{} {name}", object.kind),
            warnings,
        };
        Ok(Observation {
            client_pod: "svcconf".into(),
            client_node: "the API server".into(),
            client_ip: String::new(),
            command: probe::command(&Probe::ApiWarnings(object.clone()), facts),
            raw: serde_json::to_string(&report).unwrap_or_default(),
            report: ProbeReport::Warnings(report),
        })
    }

    /// Whose proxy rules explain a failed check: the client pod's node; for
    /// a client outside the cluster, the node it sent to (a NodePort on a
    /// node's address), else every node (a LoadBalancer or external IP may
    /// be answered by any of them).
    async fn nodes_involved(
        &self,
        check: &crate::model::Check,
        client_node: &str,
        facts: &Facts,
    ) -> Vec<String> {
        if !matches!(
            check.from,
            ClientPlacement::External | ClientPlacement::ExternalContainer
        ) {
            return vec![client_node.to_string()];
        }
        let target = match &check.probe {
            Probe::Http { target, .. } | Probe::Udp { target, .. } | Probe::Tcp { target } => {
                facts.render_target(target)
            }
            Probe::Dns { .. } | Probe::ApiWarnings(_) => return Vec::new(),
        };
        let host = target
            .rsplit_once(':')
            .map_or(target.as_str(), |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string();
        let nodes = crate::kube::nodes::internal_ips(&self.cluster.client, IpFamily::of(&host))
            .await
            .unwrap_or_default();
        match nodes.iter().find(|(_, ip)| *ip == host) {
            Some((name, _)) => vec![name.clone()],
            None => nodes.into_iter().map(|(name, _)| name).collect(),
        }
    }

    /// Resolves what the probe and the assertions refer to.
    async fn facts(
        &self,
        jig: &Jig,
        probe: &Probe,
        assertions: &[Assertion],
        from: &ClientPlacement,
    ) -> Result<Facts, String> {
        let mut facts = Facts::default();
        facts.vars.insert("namespace".into(), jig.namespace.clone());
        let templates = templates(probe, assertions);
        let mut selectors = BTreeSet::new();
        for a in assertions {
            match a {
                Assertion::Backends { pods, .. } => {
                    selectors.insert(pods.clone());
                }
                Assertion::EndpointSliceShards { service, pods, .. } => {
                    selectors.insert(pods.clone());
                    let slices = jig
                        .slice_facts(service)
                        .await
                        .map_err(|e| cluster_error_chain(&e))?;
                    facts.endpoint_slices.insert(service.clone(), slices);
                }
                Assertion::BackendsOnClientNode(pods) => {
                    selectors.insert(pods.clone());
                }
                Assertion::BackendsInClientZone(pods) => {
                    selectors.insert(pods.clone());
                }
                _ => {}
            }
        }
        if let ClientPlacement::OtherNodeThan(s)
        | ClientPlacement::SameNodeAs(s)
        | ClientPlacement::OtherZoneThan(s)
        | ClientPlacement::Pod(s) = from
        {
            selectors.insert(s.clone());
        }
        let by_zone = matches!(from, ClientPlacement::OtherZoneThan(_))
            || assertions
                .iter()
                .any(|a| matches!(a, Assertion::BackendsInClientZone(_)));
        if by_zone {
            facts.zones = crate::kube::nodes::zones(&jig.client)
                .await
                .map_err(|e| cluster_error_chain(&e))?;
        }
        facts.vars.extend(resolve::vars(jig, &templates).await?);
        for selector in selectors {
            let pods = jig
                .ready_pods(&selector)
                .await
                .map_err(|e| cluster_error_chain(&e))?;
            facts.ready_pods.insert(selector, pods);
        }
        Ok(facts)
    }

    /// Picks the client pod the placement asks for (deterministically).
    async fn client_for(
        &self,
        jig: &Jig,
        placement: &ClientPlacement,
        facts: &Facts,
    ) -> Result<PodFact, CheckError> {
        if let ClientPlacement::Pod(sel) = placement {
            // By name, like every other choice: the same pod each attempt.
            return facts
                .ready_pods
                .get(sel)
                .and_then(|pods| pods.first())
                .cloned()
                .ok_or_else(|| CheckError::Other(format!("no Ready pod {sel} to send from")));
        }
        let clients = jig
            .client_pods()
            .await
            .map_err(|e| cluster_error_chain(&e))?;
        let nodes_of = |selector: &str| -> BTreeSet<String> {
            facts
                .ready_pods
                .get(selector)
                .map(|p| p.iter().map(|p| p.node.clone()).collect())
                .unwrap_or_default()
        };
        let (chosen, wanted) = match placement {
            ClientPlacement::AnyNode => (clients.first(), "any node".to_string()),
            ClientPlacement::External
            | ClientPlacement::ExternalContainer
            | ClientPlacement::ApiServer
            | ClientPlacement::Pod(_) => (None, "outside the cluster (not a pod)".to_string()),
            ClientPlacement::OtherNodeThan(sel) => {
                let busy = nodes_of(sel);
                (
                    clients.iter().find(|c| !busy.contains(&c.node)),
                    format!("a node without pods {sel} (they run on {})", join(&busy)),
                )
            }
            ClientPlacement::OtherZoneThan(sel) => {
                let zone_of = |node: &String| facts.zones.get(node).cloned().flatten();
                let busy: BTreeSet<String> = nodes_of(sel).iter().filter_map(zone_of).collect();
                (
                    clients
                        .iter()
                        .find(|c| zone_of(&c.node).is_some_and(|z| !busy.contains(&z))),
                    format!(
                        "a node in a zone without pods {sel} (they run in zones {})",
                        join(&busy)
                    ),
                )
            }
            ClientPlacement::SameNodeAs(sel) => {
                let busy = nodes_of(sel);
                (
                    clients.iter().find(|c| busy.contains(&c.node)),
                    format!("a node with pods {sel} (they run on {})", join(&busy)),
                )
            }
        };
        chosen.cloned().ok_or_else(|| {
            let on: BTreeSet<String> = clients.iter().map(|c| c.node.clone()).collect();
            CheckError::NoClient(format!(
                "no client pod on {wanted}; client pods run on {}",
                join(&on)
            ))
        })
    }
}

fn join(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "no node".into()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The templates a check's probe and assertions render.
fn templates(probe: &Probe, assertions: &[Assertion]) -> Vec<String> {
    let mut templates = match probe {
        Probe::Http { target, path, .. } => vec![target.clone(), path.clone()],
        Probe::Tcp { target } | Probe::Udp { target, .. } => vec![target.clone()],
        Probe::Dns { name, .. } => vec![name.clone()],
        Probe::ApiWarnings(object) => vec![object.name.clone()],
    };
    for a in assertions {
        if let Assertion::Answers(answers) | Assertion::Srv(answers) = a {
            templates.extend(answers.iter().cloned());
        }
    }
    templates
}

/// Why a check cannot hold in the jig's family because of a Service that
/// is not the case's (`${clusterIP:default/kubernetes}`): the cluster made
/// it single-stack in its primary family, which may be the other one.
/// `None` when every such Service has an address in the family.
async fn foreign_service_lacks_family(jig: &Jig, templates: &[String]) -> Option<String> {
    for placeholder in crate::template::placeholders(templates) {
        let crate::template::Placeholder::ClusterIp {
            namespace: Some(ns),
            service,
        } = placeholder
        else {
            continue;
        };
        if ns == jig.namespace {
            continue;
        }
        let theirs = jig.in_namespace(ns.clone());
        if let Err(crate::kube::jig::JigError::NoClusterIp { .. }) =
            theirs.cluster_ip(&service).await
        {
            return Some(format!(
                "Service {ns}/{service} is the cluster's, not the case's, and has no {} ClusterIP",
                jig.family
            ));
        }
    }
    None
}

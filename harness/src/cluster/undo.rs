//! What a case run changed outside its own namespace (an address on a node,
//! a container on the kind network, a patched shared object, kube-proxy's
//! mode), and how each is put back. Kept twice: in the runner's memory, for
//! a run that ends or is cancelled, and as a journal on the case's
//! namespace (`svcconf.io/undo`), for the run after one that was killed.

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};

use super::docker::DOCKER_DEADLINE;
use super::{command, proxy_mode};
use crate::kube::apply::Applier;
use crate::kube::{namespace, nodes, service_cidr, wait};
use crate::model::{scaled, ObjectPatch, ProxyMode};

/// What must be undone when the case ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Undo {
    /// An address put on a node.
    Address { node: String, address: String },
    /// A container started next to the cluster.
    Container { name: String },
    /// A shared object patched (its `restore` patch, ready to apply).
    Patch(ObjectPatch),
    /// kube-proxy's configuration before the case switched its mode, and
    /// the mode it ran.
    ProxyMode { config: String, mode: ProxyMode },
    /// A Service range added (a cluster-scoped ServiceCIDR).
    ServiceCidr { name: String },
    /// A taint put on a node.
    Taint { node: String, key: String },
}

/// How long a restored shared workload (MetalLB's speaker) may take to be
/// ready again, so the cases after it find it working.
const RESTORE_DEADLINE: Duration = Duration::from_secs(120);

/// Where an action hands its undo, the moment the change may have happened.
pub type Defer<'a> = dyn Fn(Undo) -> BoxFuture<'a, ()> + Send + Sync + 'a;

impl Undo {
    /// Undoes it; the line says what happened, for the evidence.
    pub async fn run(&self, applier: &Applier, namespace: &str) -> String {
        // What is undone on a node or next to it goes through docker.
        let docker =
            || command::which("docker").ok_or_else(|| format!("cannot undo {self:?}: no docker"));
        match self {
            Undo::Patch(patch) => restore(applier, namespace, patch).await,
            Undo::ProxyMode { config, mode } => {
                proxy_mode::restore(applier.client(), config, *mode).await
            }
            Undo::Taint { node, key } => {
                match nodes::remove_taint(applier.client(), node, key).await {
                    Ok(true) => format!("took taint {key} off node {node}"),
                    Ok(false) => format!("node {node} had no taint {key} left"),
                    Err(e) => format!(
                        "could not take taint {key} off node {node}: {}",
                        super::error_chain(&e)
                    ),
                }
            }
            Undo::ServiceCidr { name } => service_cidr::delete(applier.client(), name)
                .await
                .unwrap_or_else(|e| {
                    format!(
                        "could not delete ServiceCIDR {name}: {}",
                        super::error_chain(&e)
                    )
                }),
            Undo::Address { node, address } => {
                let docker = match docker() {
                    Ok(d) => d,
                    Err(line) => return line,
                };
                let cidr = crate::model::host_prefix(address);
                let args = ["exec", node, "ip", "addr", "del", &cidr, "dev", "eth0"];
                match command::run(&docker, &args, scaled(DOCKER_DEADLINE)).await {
                    Ok(_) => format!("removed {cidr} from node {node}"),
                    // Deferred before its `ip addr add`, which may not have
                    // got as far as placing it.
                    Err(e) if e.to_string().contains("Cannot assign requested address") => {
                        format!("node {node} never got {cidr}")
                    }
                    Err(e) => format!("could not remove {cidr} from node {node}: {e}"),
                }
            }
            Undo::Container { name } => {
                let docker = match docker() {
                    Ok(d) => d,
                    Err(line) => return line,
                };
                match command::run(&docker, &["rm", "-f", name], scaled(DOCKER_DEADLINE)).await {
                    Ok(_) => format!("removed container {name}"),
                    // Deferred before its `docker run`, which may not have
                    // got as far as creating it.
                    Err(e) if e.to_string().contains("No such container") => {
                        format!("container {name} was never created")
                    }
                    Err(e) => format!("could not remove container {name}: {e}"),
                }
            }
        }
    }
}

/// Applies a restore patch; a DaemonSet is then waited on until it is ready
/// on every node again.
async fn restore(applier: &Applier, namespace: &str, patch: &ObjectPatch) -> String {
    let ns = patch.namespace.as_deref().unwrap_or(namespace);
    let what = format!("{} {} in {ns}", patch.kind, patch.name);
    if let Err(e) = applier.merge_patch(namespace, patch).await {
        return format!("could not restore {what}: {}", super::error_chain(&e));
    }
    if patch.kind != "DaemonSet" {
        return format!("restored {what}");
    }
    match daemonset_back(applier.client(), ns, &patch.name, &what).await {
        Ok(()) => format!("restored {what}; ready again"),
        Err(e) => format!("restored {what}, but {e}"),
    }
}

/// The DaemonSet ready on every node with pods of its own: a restore that
/// lands while the sabotage's pods are still terminating finds them
/// counted ready in its status, and they go a moment later.
async fn daemonset_back(client: &Client, ns: &str, name: &str, what: &str) -> Result<(), String> {
    let daemonsets = Api::<DaemonSet>::namespaced(client.clone(), ns);
    wait::until(
        daemonsets.clone(),
        Some(&format!("metadata.name={name}")),
        what.to_string(),
        scaled(RESTORE_DEADLINE),
        wait::daemonset_ready(name),
    )
    .await
    .map_err(|e| e.to_string())?;
    let ds = daemonsets
        .get(name)
        .await
        .map_err(|e| super::error_chain(&e))?;
    let desired = ds.status.map_or(0, |s| s.desired_number_scheduled);
    let selector = ds
        .spec
        .and_then(|s| s.selector.match_labels)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    wait::until_config(
        Api::<Pod>::namespaced(client.clone(), ns),
        watcher::Config::default().labels(&selector),
        format!("pods {selector} of {what}"),
        scaled(RESTORE_DEADLINE),
        wait::ready_pods(usize::try_from(desired).unwrap_or(0)),
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

/// Writes a case namespace's journal: everything still to undo, oldest
/// first.
pub async fn journal(client: &Client, ns: &str, pending: &[Undo]) -> Result<(), String> {
    let json = serde_json::to_string(pending).map_err(|e| e.to_string())?;
    namespace::annotate(client, ns, namespace::UNDO_KEY, &json)
        .await
        .map_err(|e| super::error_chain(&e))
}

/// What a namespace's journal says is still to undo; an unreadable one is
/// said so, not guessed at.
fn journaled(ns: &Namespace) -> Result<Vec<Undo>, String> {
    match ns.annotations().get(namespace::UNDO_KEY) {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| format!("its {} annotation does not read: {e}", namespace::UNDO_KEY)),
    }
}

/// Undoes `pending` (what one case namespace did, oldest first), newest
/// first: a later change may sit on an earlier one. A line per undo.
pub async fn all(applier: &Applier, ns: &str, pending: &[Undo]) -> Vec<String> {
    let mut done = Vec::new();
    for u in pending.iter().rev() {
        done.push(u.run(applier, ns).await);
    }
    done
}

/// Undoes what a dead run's case namespace journaled; the lines say what
/// happened.
pub async fn replay(client: &Client, ns: &Namespace) -> Vec<String> {
    let name = ns.name_any();
    let lines = match journaled(ns) {
        Err(e) => vec![e],
        Ok(pending) => all(&Applier::new(client.clone()), &name, &pending).await,
    };
    lines.into_iter().map(|l| format!("{name}: {l}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_reads_back_as_written() {
        let pending = vec![
            Undo::Address {
                node: "svcconf-iptables-worker".into(),
                address: "172.18.201.7".into(),
            },
            Undo::Container {
                name: "svcconf-x-server".into(),
            },
            Undo::Patch(ObjectPatch {
                api_version: "apps/v1".into(),
                kind: "DaemonSet".into(),
                name: "speaker".into(),
                merge: serde_json::json!({"spec": {"template": {"spec": {"nodeSelector": {"k": null}}}}}),
                namespace: Some("metallb-system".into()),
                status: false,
                restore: None,
            }),
            Undo::ProxyMode {
                config: "mode: iptables\n".into(),
                mode: ProxyMode::Iptables,
            },
        ];
        let mut ns = Namespace::default();
        ns.annotations_mut().insert(
            namespace::UNDO_KEY.into(),
            serde_json::to_string(&pending).unwrap(),
        );
        assert_eq!(journaled(&ns).unwrap(), pending);
        assert!(journaled(&Namespace::default()).unwrap().is_empty());
        ns.annotations_mut()
            .insert(namespace::UNDO_KEY.into(), "[{".into());
        assert!(journaled(&ns).unwrap_err().contains("svcconf.io/undo"));
    }
}

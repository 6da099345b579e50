//! A case's steps: the changes made between checks (a pod told to fail its
//! readiness probe, a scale change, an address put on a node), done through
//! the case's jig. Patches are rendered first, so they may use the same
//! placeholders as checks (`${spareIP:1}`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;

use crate::cluster::proxy_mode;
use crate::cluster::{command, docker};
use crate::kube::apply::Applier;
use crate::kube::exec;
use crate::kube::jig::Jig;
use crate::kube::manifest::ImageMap;
use crate::kube::wait;
use crate::model::{Action, ObjectPatch, Probe, ProbeReport, ProxyMode};
use crate::probe;
use crate::resolve;
use crate::template::{render_json, strings, Facts, NodePick};

const DOCKER_DEADLINE: Duration = Duration::from_secs(20);

/// What must be undone when the case ends.
#[derive(Debug, Clone, PartialEq)]
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
}

/// How long a restored shared workload (MetalLB's speaker) may take to be
/// ready again, so the cases after it find it working.
const RESTORE_DEADLINE: Duration = Duration::from_secs(120);

impl Undo {
    /// Undoes it; the line says what happened, for the evidence.
    pub async fn run(&self, applier: &Applier, namespace: &str) -> String {
        if let Undo::Patch(patch) = self {
            return restore(applier, namespace, patch).await;
        }
        if let Undo::ProxyMode { config, mode } = self {
            return proxy_mode::restore(applier.client(), config, *mode).await;
        }
        let Some(docker) = command::which("docker") else {
            return format!("cannot undo {self:?}: no docker");
        };
        match self {
            Undo::Patch(_) | Undo::ProxyMode { .. } => unreachable!("handled above"),
            Undo::Address { node, address } => {
                let cidr = format!("{address}/32");
                let args = ["exec", node, "ip", "addr", "del", &cidr, "dev", "eth0"];
                match command::run(&docker, &args, DOCKER_DEADLINE).await {
                    Ok(_) => format!("removed {cidr} from node {node}"),
                    Err(e) => format!("could not remove {cidr} from node {node}: {e}"),
                }
            }
            Undo::Container { name } => {
                match command::run(&docker, &["rm", "-f", name], DOCKER_DEADLINE).await {
                    Ok(_) => format!("removed container {name}"),
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
        return format!(
            "could not restore {what}: {}",
            crate::cluster::error_chain(&e)
        );
    }
    if patch.kind != "DaemonSet" {
        return format!("restored {what}");
    }
    let ready = wait::until(
        Api::<DaemonSet>::namespaced(applier.client().clone(), ns),
        Some(&format!("metadata.name={}", patch.name)),
        what.clone(),
        RESTORE_DEADLINE,
        wait::daemonset_ready(&patch.name),
    )
    .await;
    match ready {
        Ok(()) => format!("restored {what}; ready again"),
        Err(e) => format!("restored {what}, but {e}"),
    }
}

async fn facts_for(jig: &Jig, templates: &[String]) -> Result<Facts, String> {
    Ok(Facts {
        vars: resolve::vars(jig, templates).await?,
        ..Default::default()
    })
}

/// Does one action; `Ok` is a line of evidence saying what was done, and
/// what to undo when the case ends.
pub async fn perform(
    jig: &Jig,
    applier: &Applier,
    images: &ImageMap,
    cluster_mode: ProxyMode,
    action: &Action,
) -> Result<(String, Option<Undo>), String> {
    match action {
        Action::ProxyMode { to, restart } => {
            let mode = to.resolve(cluster_mode)?;
            let client = applier.client();
            let before = proxy_mode::configured(client).await?;
            let config = proxy_mode::with_mode(&before, mode).ok_or_else(|| {
                "kube-proxy's config.conf has no top-level `mode:` line to edit".to_string()
            })?;
            proxy_mode::configure(client, &config).await?;
            let undo = Undo::ProxyMode {
                config: before,
                mode: cluster_mode,
            };
            if !restart {
                return Ok((
                    format!("set mode: {mode} in kube-proxy's ConfigMap, no restart"),
                    Some(undo),
                ));
            }
            proxy_mode::restart(client).await?;
            Ok((
                format!(
                    "set mode: {mode} in kube-proxy's ConfigMap and restarted DaemonSet kube-proxy"
                ),
                Some(undo),
            ))
        }
        Action::Patch(patch) => {
            let mut templates = Vec::new();
            strings(&patch.merge, &mut templates);
            let facts = facts_for(jig, &templates).await?;
            let rendered = ObjectPatch {
                merge: render_json(&patch.merge, &facts),
                ..patch.clone()
            };
            applier
                .merge_patch(&jig.namespace, &rendered)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            let undo = rendered.restore.clone().map(|merge| {
                Undo::Patch(ObjectPatch {
                    merge,
                    restore: None,
                    ..rendered.clone()
                })
            });
            Ok((
                format!(
                    "patched {}{} {}: {}",
                    rendered.kind,
                    if rendered.status { " status" } else { "" },
                    rendered.name,
                    rendered.merge
                ),
                undo,
            ))
        }
        Action::NodeAddress { node, address } => {
            let pick =
                NodePick::parse(node).ok_or_else(|| format!("node {node:?} picks no node"))?;
            let (node, _) = resolve::node(jig, &pick).await?;
            let address = facts_for(jig, std::slice::from_ref(address))
                .await?
                .render(address);
            let docker = command::which("docker")
                .ok_or_else(|| "placing an address on a node needs docker (kind)".to_string())?;
            let cidr = format!("{address}/32");
            let args = ["exec", &node, "ip", "addr", "add", &cidr, "dev", "eth0"];
            command::run(&docker, &args, DOCKER_DEADLINE)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("added {cidr} to node {node}"),
                Some(Undo::Address { node, address }),
            ))
        }
        Action::Apply(object) => {
            let mut templates = Vec::new();
            strings(object, &mut templates);
            let facts = facts_for(jig, &templates).await?;
            let rendered = render_json(object, &facts);
            applier
                .apply(&jig.namespace, &rendered)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            Ok((
                format!(
                    "applied {} {}",
                    rendered["kind"].as_str().unwrap_or("?"),
                    rendered["metadata"]["name"].as_str().unwrap_or("?")
                ),
                None,
            ))
        }
        Action::Container { name, image, args } => {
            let docker = command::which("docker")
                .ok_or_else(|| "starting a server next to the cluster needs docker".to_string())?;
            let container = docker::container_name(&jig.namespace, name);
            let image = images.resolve(image);
            let (owned, pid) = (docker::owned_label(), docker::pid_label());
            let mut cmd: Vec<&str> = vec![
                "run",
                "-d",
                "--network",
                docker::KIND_NETWORK,
                "--hostname",
                name,
                "--name",
                &container,
                "--label",
                &owned,
                "--label",
                &pid,
                image,
            ];
            cmd.extend(args.iter().map(String::as_str));
            command::run(&docker, &cmd, DOCKER_DEADLINE)
                .await
                .map_err(|e| e.to_string())?;
            let undo = Undo::Container {
                name: container.clone(),
            };
            // The undo goes back even when the address cannot be read.
            let ip = docker::container_ip(&container)
                .await
                .unwrap_or_else(|e| format!("an unknown address ({e})"));
            Ok((
                format!("started container {container} ({image}) at {ip}"),
                Some(undo),
            ))
        }
        Action::HttpGet { pods, port, path } => {
            let target = jig
                .ready_pods(pods)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?
                .into_iter()
                .next()
                .ok_or_else(|| format!("no ready pod {pods} to send GET {path} to"))?;
            let client = jig
                .client_pods()
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?
                .into_iter()
                .next()
                .ok_or_else(|| "no ready client pod to send the GET from".to_string())?;
            let probe = Probe::Http {
                target: format!("{}:{port}", target.ip),
                count: 1,
                path: path.clone(),
                interval_ms: 0,
            };
            let cmd = probe::command(&probe, &Facts::default());
            let out = exec::exec(
                &jig.client,
                &jig.clients,
                &client.name,
                &cmd,
                probe::deadline(&probe),
            )
            .await
            .map_err(|e| crate::cluster::error_chain(&e))?;
            match probe::parse(&probe, &out.stdout) {
                Some(ProbeReport::Http(r)) if r.ok == 1 => Ok((
                    format!(
                        "GET {path} on pod {} ({}) from {}: answered",
                        target.name, target.ip, client.name
                    ),
                    None,
                )),
                _ => Err(format!(
                    "expected GET http://{}:{port}{path} (pod {}) to answer 200, saw {}",
                    target.ip,
                    target.name,
                    out.stdout.trim()
                )),
            }
        }
    }
}

//! A case's steps: the changes made between checks (a pod told to fail its
//! readiness probe, a scale change, an address put on a node), done through
//! the case's jig. Patches are rendered first, so they may use the same
//! placeholders as checks (`${spareIP:1}`).

use std::time::Duration;

use crate::cluster::command;
use crate::cluster::docker::{self, DOCKER_DEADLINE};
use crate::cluster::proxy_mode;
use crate::cluster::undo::{Defer, Undo};
use crate::kube::apply::Applier;
use crate::kube::exec;
use crate::kube::jig::Jig;
use crate::kube::manifest::ImageMap;
use crate::kube::service_cidr;
use crate::model::{scaled, Action, ObjectPatch, Probe, ProbeReport, ProxyMode};
use crate::probe;
use crate::resolve;
use crate::template::{render_json, strings, Facts, NodePick};

/// How long an `httpGet` step action retries a pod that does not answer.
const HTTP_GET_DEADLINE: Duration = Duration::from_secs(10);

async fn facts_for(jig: &Jig, templates: &[String]) -> Result<Facts, String> {
    Ok(Facts {
        vars: resolve::vars(jig, templates).await?,
        ..Default::default()
    })
}

/// The name of the node a step's node pick (`1`, `with=<selector>`, ...) means.
async fn picked_node(jig: &Jig, pick: &str) -> Result<String, String> {
    let parsed = NodePick::parse(pick).ok_or_else(|| format!("node {pick:?} picks no node"))?;
    Ok(resolve::node(jig, &parsed).await?.0)
}

/// Does one action; `Ok` is a line of evidence saying what was done. What
/// must be undone when the case ends goes to `defer` as soon as the change
/// may have happened, before the action is over: a step that fails or times
/// out half-way, or a run cancelled during it, still has it undone.
pub async fn perform(
    jig: &Jig,
    applier: &Applier,
    images: &ImageMap,
    cluster_mode: ProxyMode,
    action: &Action,
    defer: &Defer<'_>,
) -> Result<String, String> {
    match action {
        Action::ProxyMode { to, restart } => {
            let mode = to.resolve(cluster_mode)?;
            let client = applier.client();
            let before = proxy_mode::configured(client).await?;
            let config = proxy_mode::with_mode(&before, mode).ok_or_else(|| {
                "kube-proxy's config.conf has no top-level `mode:` line to edit".to_string()
            })?;
            // Before it: an update cut off by a killed run may still land.
            defer(Undo::ProxyMode {
                config: before,
                mode: cluster_mode,
            })
            .await;
            proxy_mode::configure(client, &config).await?;
            if !restart {
                return Ok(format!(
                    "set mode: {mode} in kube-proxy's ConfigMap, no restart"
                ));
            }
            proxy_mode::restart(client).await?;
            Ok(format!(
                "set mode: {mode} in kube-proxy's ConfigMap and restarted DaemonSet kube-proxy"
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
            // Before the patch: one that times out may still have landed,
            // and the restore patch only sets what was there.
            if let Some(merge) = rendered.restore.clone() {
                defer(Undo::Patch(ObjectPatch {
                    merge,
                    restore: None,
                    ..rendered.clone()
                }))
                .await;
            }
            applier
                .merge_patch(&jig.namespace, &rendered)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            Ok(format!(
                "patched {}{} {}: {}",
                rendered.kind,
                if rendered.status { " status" } else { "" },
                rendered.name,
                rendered.merge
            ))
        }
        Action::NodeAddress { node, address } => {
            let node = picked_node(jig, node).await?;
            let address = facts_for(jig, std::slice::from_ref(address))
                .await?
                .render(address);
            let docker = command::which("docker")
                .ok_or_else(|| "placing an address on a node needs docker (kind)".to_string())?;
            let cidr = crate::model::host_prefix(&address);
            // An address already there is not the case's to remove.
            let show = ["exec", &node, "ip", "-o", "addr", "show", "dev", "eth0"];
            let held = command::run(&docker, &show, scaled(DOCKER_DEADLINE))
                .await
                .map_err(|e| e.to_string())?;
            if held.split_whitespace().any(|word| word == cidr) {
                return Err(format!("node {node} already holds {cidr}"));
            }
            // Journaled before the add: a run killed while `docker exec`
            // is under way leaves the address placed all the same.
            defer(Undo::Address {
                node: node.clone(),
                address,
            })
            .await;
            let args = ["exec", &node, "ip", "addr", "add", &cidr, "dev", "eth0"];
            command::run(&docker, &args, scaled(DOCKER_DEADLINE))
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("added {cidr} to node {node}"))
        }
        Action::Apply(object) => {
            let mut templates = Vec::new();
            strings(object, &mut templates);
            let facts = facts_for(jig, &templates).await?;
            let rendered = jig.manifest(&render_json(object, &facts));
            applier
                .apply(&jig.namespace, &rendered)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            Ok(format!(
                "applied {} {}",
                rendered["kind"].as_str().unwrap_or("?"),
                rendered["metadata"]["name"].as_str().unwrap_or("?")
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
            // Before the run: a `docker run` past its deadline may still
            // start the container, and the name is the case's own.
            defer(Undo::Container {
                name: container.clone(),
            })
            .await;
            command::run(&docker, &cmd, scaled(DOCKER_DEADLINE))
                .await
                .map_err(|e| e.to_string())?;
            let ip = docker::container_ip(&container, jig.family)
                .await
                .unwrap_or_else(|e| format!("an unknown address ({e})"));
            Ok(format!("started container {container} ({image}) at {ip}"))
        }
        Action::ServiceCidr {} => {
            let client = applier.client();
            let (name, cidr) =
                service_cidr::claim(client, &jig.namespace, jig.family, async |name: &str| {
                    defer(Undo::ServiceCidr {
                        name: name.to_string(),
                    })
                    .await
                })
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            service_cidr::wait_ready(client, &name, scaled(service_cidr::READY_DEADLINE))
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("added ServiceCIDR {name} ({cidr}), Ready"))
        }
        Action::Taint {
            node,
            key,
            value,
            effect,
        } => {
            let node = picked_node(jig, node).await?;
            let client = applier.client();
            // Before it: a patch past its deadline may still land. A taint
            // the node had already is not the case's, and the undo finds
            // it gone only if this run took it.
            let had = crate::kube::nodes::has_taint(client, &node, key)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            if had {
                return Err(format!(
                    "node {node} has a taint {key} already: it is not this case's to put on and take off"
                ));
            }
            defer(Undo::Taint {
                node: node.clone(),
                key: key.clone(),
            })
            .await;
            crate::kube::nodes::add_taint(client, &node, key, value, effect)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            Ok(format!("tainted node {node} {key}={value}:{effect}"))
        }
        Action::Untaint { node, key } => {
            let node = picked_node(jig, node).await?;
            let removed = crate::kube::nodes::remove_taint(applier.client(), &node, key)
                .await
                .map_err(|e| crate::cluster::error_chain(&e))?;
            if !removed {
                return Err(format!("node {node} has no taint {key} to take off"));
            }
            Ok(format!("took taint {key} off node {node}"))
        }
        Action::ProxyFeatureGate { name, enabled } => {
            let client = applier.client();
            let before = proxy_mode::configured(client).await?;
            let config = proxy_mode::with_feature_gate(&before, name, *enabled);
            if !proxy_mode::rolls_on_change(client).await {
                return Err("DaemonSet kube-system/kube-proxy updates OnDelete: a rollout restart would not replace its pods".into());
            }
            defer(Undo::ProxyMode {
                config: before,
                mode: cluster_mode,
            })
            .await;
            proxy_mode::configure(client, &config).await?;
            let zones = proxy_mode::restart_rolled_out(client).await?;
            Ok(format!(
                "set featureGates {name}: {enabled} in kube-proxy's ConfigMap, restarted DaemonSet kube-proxy and saw it rolled out; {zones}"
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
            let address = format!("{}:{port}", target.ip);
            let probe = Probe::Http {
                target: address.clone(),
                count: 1,
                path: path.clone(),
                interval_ms: 0,
            };
            let cmd = probe::command(&probe, &Facts::default());
            // Until answered, within a deadline: the kubelet's readiness
            // probe reaches a pod on its first address only, and on a
            // dual-stack cluster a Ready pod's IPv6 address was seen to
            // answer about a second later (duplicate address detection).
            let deadline = tokio::time::Instant::now() + scaled(HTTP_GET_DEADLINE);
            loop {
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
                    Some(ProbeReport::Http(r)) if r.ok == 1 => {
                        return Ok(format!(
                            "GET {path} on pod {} ({}) from {}: answered",
                            target.name, target.ip, client.name
                        ))
                    }
                    _ if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                    _ => {
                        return Err(format!(
                        "expected GET http://{}{path} (pod {}) to answer 200 within {}s, saw {}",
                        crate::model::bracket_host(&address),
                        target.name,
                        scaled(HTTP_GET_DEADLINE).as_secs(),
                        out.stdout.trim()
                    ))
                    }
                }
            }
        }
    }
}

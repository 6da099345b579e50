//! Switching kube-proxy's mode as an operator does (the `kube-proxy`
//! ConfigMap's `mode:`, a rollout restart) and telling when every node runs
//! the new one: its log says `Using <mode> Proxier`, its rules hold the
//! Services.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::command;
use super::dataplane::mode_from_log;
use crate::kube::{exec, nodes, wait};
use crate::model::{scaled, ProxyMode};

const KUBE_SYSTEM: &str = "kube-system";
const KUBE_PROXY: &str = "kube-proxy";
const CONFIG_KEY: &str = "config.conf";
/// A restarted kube-proxy DaemonSet of three nodes, on a loaded 2-core host.
pub const ROLLOUT_DEADLINE: Duration = Duration::from_secs(180);

/// kube-proxy's configuration as its ConfigMap holds it (`config.conf`).
pub async fn configured(client: &Client) -> Result<String, String> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let map = maps
        .get(KUBE_PROXY)
        .await
        .map_err(|e| format!("get ConfigMap kube-system/kube-proxy: {e}"))?;
    map.data
        .and_then(|d| d.get(CONFIG_KEY).cloned())
        .ok_or_else(|| "ConfigMap kube-system/kube-proxy has no config.conf".to_string())
}

/// Writes `config` as kube-proxy's configuration (running pods keep theirs).
pub async fn configure(client: &Client, config: &str) -> Result<(), String> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let patch = serde_json::json!({"data": {CONFIG_KEY: config}});
    maps.patch(KUBE_PROXY, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("patch ConfigMap kube-system/kube-proxy: {e}"))?;
    Ok(())
}

/// `config` with its top-level `mode:` set to `mode` (the line an operator
/// edits), or `None` when it has no such line.
pub fn with_mode(config: &str, mode: ProxyMode) -> Option<String> {
    let mut found = false;
    let lines: Vec<String> = config
        .lines()
        .map(|line| {
            if line.starts_with("mode:") {
                found = true;
                format!("mode: {mode}")
            } else {
                line.to_string()
            }
        })
        .collect();
    found.then(|| lines.join("\n") + if config.ends_with('\n') { "\n" } else { "" })
}

/// `config` with the feature gate `gate` set to `enabled` under its
/// top-level `featureGates:` (added when it has none, or holds `{}` or
/// `null`, as kubeadm writes it).
pub fn with_feature_gate(config: &str, gate: &str, enabled: bool) -> String {
    let entry = format!("  {gate}: {enabled}");
    let mut out: Vec<String> = Vec::new();
    let mut lines = config.lines().peekable();
    let mut placed = false;
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix("featureGates:") else {
            out.push(line.to_string());
            continue;
        };
        out.push("featureGates:".to_string());
        let rest = rest.trim();
        if !rest.is_empty() && rest != "{}" && rest != "null" {
            // A flow map (`{A: true}`): its entries, one per line.
            let inner = rest.trim_start_matches('{').trim_end_matches('}');
            for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                if item.split(':').next().map(str::trim) != Some(gate) {
                    out.push(format!("  {item}"));
                }
            }
        }
        // The block map's own entries, but the gate's.
        while let Some(next) = lines.peek() {
            if !next.starts_with(' ') || next.trim().is_empty() {
                break;
            }
            let next = lines.next().unwrap_or_default();
            if next.trim().split(':').next() != Some(gate) {
                out.push(next.to_string());
            }
        }
        out.push(entry.clone());
        placed = true;
    }
    if !placed {
        out.push("featureGates:".to_string());
        out.push(entry);
    }
    out.join("\n") + "\n"
}

/// `kubectl rollout restart daemonset kube-proxy`: a new template
/// annotation, so the controller replaces every pod (unless its update
/// strategy says OnDelete).
pub async fn restart(client: &Client) -> Result<(), String> {
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": now
    }}}}});
    sets.patch(KUBE_PROXY, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("restart DaemonSet kube-system/kube-proxy: {e}"))?;
    Ok(())
}

/// Whether kube-proxy's DaemonSet replaces its pods on a template change.
pub async fn rolls_on_change(client: &Client) -> bool {
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    sets.get(KUBE_PROXY)
        .await
        .ok()
        .and_then(|d| d.spec?.update_strategy?.type_)
        != Some("OnDelete".to_string())
}

/// Waits until the kube-proxy DaemonSet rolled out (every pod of the newest
/// template, ready).
pub async fn rolled_out(client: &Client, deadline: Duration) -> Result<(), String> {
    wait::until(
        Api::<DaemonSet>::namespaced(client.clone(), KUBE_SYSTEM),
        Some(&format!("metadata.name={KUBE_PROXY}")),
        "DaemonSet kube-system/kube-proxy".to_string(),
        deadline,
        wait::daemonset_ready(KUBE_PROXY),
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

pub use super::dataplane::Rules;

/// Where a mode switch stands: `Ok` when every node's kube-proxy runs
/// `want` and (unless [`Rules::Unread`]) every node's `want` rules hold
/// `namespace`'s Services while the other mode's rules are gone; else what
/// is not so yet.
pub async fn switched(
    client: &Client,
    rules: Rules<'_>,
    want: ProxyMode,
    namespace: &str,
) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let list = pods
        .list(&ListParams::default().labels("k8s-app=kube-proxy"))
        .await
        .map_err(|e| format!("list kube-proxy pods: {e}"))?;
    let mut seen = Vec::new();
    for pod in &list.items {
        let name = pod.name_any();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            return Err(format!("{name} on {node} is still terminating"));
        }
        let log = pods
            .logs(&name, &LogParams::default())
            .await
            .unwrap_or_default();
        match mode_from_log(&log) {
            Some(mode) if mode == want.to_string() => seen.push((node, name)),
            Some(mode) => {
                return Err(format!(
                    "{name} on {node} runs {mode} (its log), want {want}"
                ))
            }
            None => return Err(format!("{name} on {node} has not logged its mode yet")),
        }
    }
    if matches!(rules, Rules::Unread) {
        return Ok(format!("{} kube-proxy pods run {want}", seen.len()));
    }
    let mut lines = Vec::new();
    for (node, pod) in &seen {
        let rules = node_rules(client, rules, node, pod, namespace).await?;
        let (new, old) = match want {
            ProxyMode::Iptables => (rules.iptables_namespace, rules.nftables_services),
            ProxyMode::Nftables => (rules.nftables_namespace, rules.iptables_services),
            ProxyMode::Ipvs | ProxyMode::Other => {
                return Err(format!("{want} rules are not read here"))
            }
        };
        if new == 0 {
            return Err(format!(
                "{node}: no {want} rule mentions {namespace}'s Services yet"
            ));
        }
        if let Some(first) = old.first() {
            return Err(format!(
                "{node}: {} Service rules of the old mode are still there (first: {first})",
                old.len()
            ));
        }
        lines.push(format!(
            "{node}: {pod} runs {want}; {new} {want} rules mention {namespace}, the other mode programs no Service"
        ));
    }
    Ok(lines.join("; "))
}

/// Puts kube-proxy's configuration `config` back and, when a pod runs
/// another mode than `mode` or the ConfigMap was changed, restarts it and
/// waits for the rollout; the line says what was done.
pub async fn restore(client: &Client, config: &str, mode: ProxyMode) -> String {
    let current = configured(client).await.unwrap_or_default();
    let running = switched(client, Rules::Unread, mode, "").await;
    if current == config && running.is_ok() {
        return format!("kube-proxy runs {mode} as before; nothing to restore");
    }
    if let Err(e) = configure(client, config).await {
        return format!("could not restore kube-proxy's configuration: {e}");
    }
    if !rolls_on_change(client).await {
        // The sabotage's OnDelete strategy: its own restore rolls the pods.
        return format!("restored kube-proxy's configuration ({mode}); its pods roll once its update strategy is restored");
    }
    match restart_rolled_out(client).await {
        Ok(zones) => {
            format!("restored kube-proxy's configuration ({mode}) and restarted it; {zones}")
        }
        Err(e) => format!("restored kube-proxy's configuration ({mode}), but {e}"),
    }
}

/// Restarts kube-proxy, waits until it rolled out, then re-announces the
/// nodes' zones to the new pods; `Ok` holds that last line.
pub async fn restart_rolled_out(client: &Client) -> Result<String, String> {
    restart(client).await?;
    rolled_out(client, scaled(ROLLOUT_DEADLINE)).await?;
    Ok(reannounce_zones(client).await)
}

/// After a restart: each node's zone label taken off and put back, so no
/// kube-proxy is left without its zone (see [`nodes::reannounce_zones`]);
/// the line says what was done, for the evidence.
async fn reannounce_zones(client: &Client) -> String {
    match nodes::reannounce_zones(client).await {
        Ok(done) if done.is_empty() => "no node has a zone label".to_string(),
        Ok(done) => format!(
            "zone labels taken off and put back, so each restarted kube-proxy hears its zone: {}",
            done.join(", ")
        ),
        Err(e) => format!(
            "could not re-announce the nodes' zone labels (a restarted kube-proxy may not know its zone): {}",
            super::error_chain(&e)
        ),
    }
}

/// What one node's two backends hold: rules mentioning the namespace in
/// each mode's own syntax, and Service chains of each mode at all.
struct NodeRules {
    iptables_namespace: usize,
    nftables_namespace: usize,
    iptables_services: Vec<String>,
    nftables_services: Vec<String>,
}

async fn node_rules(
    client: &Client,
    from: Rules<'_>,
    node: &str,
    pod: &str,
    namespace: &str,
) -> Result<NodeRules, String> {
    let deadline = scaled(Duration::from_secs(20));
    let read = |args: &'static [&'static str]| async move {
        match from {
            Rules::Docker(docker) => {
                let all = [&["exec", node][..], args].concat();
                Ok(command::run(docker, &all, deadline)
                    .await
                    .unwrap_or_default())
            }
            Rules::KubeProxyPod => {
                let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
                exec::exec(client, KUBE_SYSTEM, pod, &argv, deadline)
                    .await
                    .map(|out| out.stdout)
                    .map_err(|e| format!("{node}: reading rules: {}", super::error_chain(&e)))
            }
            Rules::Unread => Ok(String::new()),
        }
    };
    // Both families: a dual-stack or IPv6 cluster's Services are in ip6
    // tables too. A missing table (after a switch back to iptables, or a
    // family the node lacks) reads as no rules.
    let saved = read(&["iptables-save", "-t", "nat"]).await?
        + &read(&["ip6tables-save", "-t", "nat"]).await?;
    let table = read(&["nft", "list", "table", "ip", "kube-proxy"]).await?
        + &read(&["nft", "list", "table", "ip6", "kube-proxy"]).await?;
    // iptables: `-m comment --comment "<ns>/<svc>:<port> ..."`; nftables:
    // chains named `service-<hash>-<ns>/<svc>/<proto>/<port>`.
    let lines = |text: &str, keep: &dyn Fn(&str) -> bool| -> Vec<String> {
        text.lines()
            .filter(|l| keep(l))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let quoted = format!("\"{namespace}/");
    let dashed = format!("-{namespace}/");
    Ok(NodeRules {
        iptables_namespace: lines(&saved, &|l| l.contains("KUBE-") && l.contains(&quoted)).len(),
        nftables_namespace: lines(&table, &|l| l.contains(&dashed)).len(),
        iptables_services: lines(&saved, &|l| l.contains("-A KUBE-SVC-")),
        nftables_services: lines(&table, &|l| l.starts_with("chain service-")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_a_feature_gate_whatever_featuregates_held() {
        let gate = |config: &str| with_feature_gate(config, "AllowServiceExternalIPs", false);
        let want = "mode: nftables\nfeatureGates:\n  AllowServiceExternalIPs: false\nport: 1\n";
        assert_eq!(gate("mode: nftables\nfeatureGates: {}\nport: 1\n"), want);
        assert_eq!(gate("mode: nftables\nfeatureGates: null\nport: 1\n"), want);
        assert_eq!(
            gate("mode: nftables\nfeatureGates:\n  AllowServiceExternalIPs: true\nport: 1\n"),
            want
        );
        assert_eq!(
            gate("mode: nftables\nfeatureGates:\n  Other: true\nport: 1\n"),
            "mode: nftables\nfeatureGates:\n  Other: true\n  AllowServiceExternalIPs: false\nport: 1\n"
        );
        assert_eq!(
            gate("mode: nftables\nfeatureGates: {Other: true, AllowServiceExternalIPs: true}\nport: 1\n"),
            "mode: nftables\nfeatureGates:\n  Other: true\n  AllowServiceExternalIPs: false\nport: 1\n"
        );
        assert_eq!(
            gate("mode: nftables\n"),
            "mode: nftables\nfeatureGates:\n  AllowServiceExternalIPs: false\n"
        );
    }
}

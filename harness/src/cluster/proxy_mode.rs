//! Which mode kube-proxy actually runs. kube-proxy logs `Using <mode>
//! Proxier` when it starts; that is what the running process chose, so it
//! wins over the `kube-proxy` ConfigMap, which only says what was configured.

use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};

/// A detected mode and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedMode {
    /// As kube-proxy names it (`iptables`, `nftables`, `ipvs`, ...).
    pub mode: String,
    pub source: String,
}

impl fmt::Display for DetectedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.mode, self.source)
    }
}

/// Reads kube-proxy's mode from its log, else from its ConfigMap; `None`
/// when the cluster has neither (no kube-proxy, or a replacement).
pub async fn detect_proxy_mode(client: &Client) -> Option<DetectedMode> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    if let Ok(list) = pods
        .list(&ListParams::default().labels("k8s-app=kube-proxy"))
        .await
    {
        for pod in list.items {
            let Some(name) = pod.metadata.name else {
                continue;
            };
            if let Ok(log) = pods.logs(&name, &LogParams::default()).await {
                if let Some(mode) = mode_from_log(&log) {
                    return Some(DetectedMode {
                        mode,
                        source: format!("log of kube-system/{name}"),
                    });
                }
            }
        }
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let map = maps.get_opt("kube-proxy").await.ok().flatten()?;
    let config = map.data?.get("config.conf")?.clone();
    Some(DetectedMode {
        mode: mode_from_config(&config)?,
        source: "kube-system/kube-proxy ConfigMap (configured)".into(),
    })
}

/// `"Using nftables Proxier"` → `nftables`.
fn mode_from_log(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("Using ")? + "Using ".len()..];
        let (mode, tail) = rest.split_once(' ')?;
        tail.starts_with("Proxier")
            .then(|| mode.to_ascii_lowercase())
    })
}

/// The `mode:` of a KubeProxyConfiguration; empty means iptables on Linux.
fn mode_from_config(config: &str) -> Option<String> {
    let value: serde_json::Value = serde_saphyr::from_str(config).ok()?;
    let mode = value.get("mode").and_then(|m| m.as_str()).unwrap_or("");
    Some(if mode.is_empty() {
        "iptables".into()
    } else {
        mode.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_mode_kube_proxy_logged() {
        let log =
            "I0320 14:32:47.011466 1 server.go:243] \"kube-proxy running in dual-stack mode\"\n\
                   I0320 14:32:47.011506 1 server_linux.go:292] \"Using nftables Proxier\"\n";
        assert_eq!(mode_from_log(log).as_deref(), Some("nftables"));
        assert_eq!(
            mode_from_log("I0 1 server.go:1] \"Using iptables Proxier\"").as_deref(),
            Some("iptables")
        );
        assert_eq!(mode_from_log("Using config file"), None);
    }

    #[test]
    fn an_empty_configured_mode_is_iptables() {
        assert_eq!(
            mode_from_config("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: \"\"\n")
                .as_deref(),
            Some("iptables")
        );
        assert_eq!(mode_from_config("mode: ipvs\n").as_deref(), Some("ipvs"));
    }
}

//! Connecting the way kubectl does: `--kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`, else the pod's service account when running in one;
//! `--context`, else the current context. Each way this can go wrong is its
//! own error, checked before any case runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::model::scaled;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// An API server that has not answered in this long is unreachable.
const REACH_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Default)]
pub struct KubeconfigSource {
    pub path: Option<PathBuf>,
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read kubeconfig {0}")]
    Unreadable(String, #[source] kube::config::KubeconfigError),
    #[error("context {context:?} is not in {origin} (contexts: {known})")]
    UnknownContext {
        context: String,
        origin: String,
        known: String,
    },
    #[error("kubeconfig {origin} has no usable cluster/user for context {context}")]
    Unusable {
        origin: String,
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no cluster to use: no --kubeconfig, no KUBECONFIG, no {home}, and not running in a pod"
    )]
    NoCluster { home: String },
    #[error("cannot use the pod's service account (in-cluster config)")]
    InCluster(#[source] kube::config::InClusterError),
    #[error("cannot build a client for {0}")]
    Client(String, #[source] kube::Error),
    #[error("API server {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
}

/// `~/.kube/config`, where kubectl looks last.
fn home_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"))
}

impl KubeconfigSource {
    /// No flag, no `KUBECONFIG`, no `~/.kube/config`, but a pod's service
    /// account: kubectl's last resort.
    pub fn in_cluster(&self) -> bool {
        self.path.is_none()
            && std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty())
            && !home_kubeconfig().is_some_and(|p| p.is_file())
    }

    /// What this source reaches, for people: the context, or `in-cluster`.
    pub fn name(&self) -> String {
        match &self.context {
            Some(c) => c.clone(),
            None if self.in_cluster() => "in-cluster".into(),
            None => self
                .read()
                .ok()
                .and_then(|k| k.current_context)
                .unwrap_or_else(|| "current-context".into()),
        }
    }

    fn origin(&self) -> String {
        match (&self.path, std::env::var("KUBECONFIG")) {
            (Some(p), _) => p.display().to_string(),
            (None, Ok(env)) if !env.is_empty() => format!("KUBECONFIG={env}"),
            _ => "~/.kube/config".into(),
        }
    }

    /// Reads the kubeconfig this source names.
    pub fn read(&self) -> Result<Kubeconfig, KubeconfigError> {
        let read = match &self.path {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        };
        read.map_err(|e| KubeconfigError::Unreadable(self.origin(), e))
    }
}

/// A client for `kubeconfig` at `context`, proven to reach its API server.
pub async fn connect(
    kubeconfig: Kubeconfig,
    context: Option<&str>,
    origin: &str,
) -> Result<Client, KubeconfigError> {
    if let Some(context) = context {
        if !kubeconfig.contexts.iter().any(|c| c.name == context) {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(KubeconfigError::UnknownContext {
                context: context.to_string(),
                origin: origin.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    let context_name = context
        .map(String::from)
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_default();
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| KubeconfigError::Unusable {
            origin: origin.to_string(),
            context: context_name,
            source,
        })?;
    reach(config).await
}

/// A client for `config`, proven to reach its API server. Without kube's
/// built-in retries of 429/503/504 (15, backing off): svcconf's waits poll
/// with deadlines of their own, and a 503 that the API server's pod proxy
/// passes on is kube-proxy's answer (`/healthz` of a proxy that stopped
/// syncing), to be read at once, not retried until it looks like silence.
async fn reach(mut config: Config) -> Result<Client, KubeconfigError> {
    config.default_retry = false;
    let server = config.cluster_url.to_string();
    let client =
        Client::try_from(config).map_err(|e| KubeconfigError::Client(server.clone(), e))?;
    match tokio::time::timeout(scaled(REACH_DEADLINE), client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(KubeconfigError::Unreachable {
            server,
            reason: error_chain(&e),
        }),
        Err(_) => Err(KubeconfigError::Unreachable {
            server,
            reason: format!("no answer within {}s", scaled(REACH_DEADLINE).as_secs()),
        }),
    }
}

/// `err: cause: cause`, as one line. A request RBAC refused (API 403)
/// ends the line as the permission it lacked (verb, resource, API group,
/// namespace) instead of the server's raw status.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let text = err.to_string();
    if let Some(p) = crate::kube::rbac::parse_forbidden(&text) {
        return p.to_string();
    }
    let mut out = text;
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if let Some(p) = crate::kube::rbac::parse_forbidden(&text) {
            out.push_str(": ");
            out.push_str(&p.to_string());
            break;
        }
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Connects as kubectl would for `source`.
impl KubeconfigSource {
    pub async fn connect(&self) -> Result<Client, KubeconfigError> {
        if self.in_cluster() && self.context.is_none() {
            if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
                return Err(KubeconfigError::NoCluster {
                    home: home_kubeconfig()
                        .map_or("~/.kube/config".into(), |p| p.display().to_string()),
                });
            }
            let config = Config::incluster().map_err(KubeconfigError::InCluster)?;
            return reach(config).await;
        }
        let kubeconfig = self.read()?;
        connect(kubeconfig, self.context.as_deref(), &self.origin()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_request_reads_as_the_missing_permission() {
        let status = kube::core::Status {
            code: 403,
            reason: "Forbidden".into(),
            message: r#"pods "svcconf-client-abcde" is forbidden: User "system:serviceaccount:sonobuoy:svcconf" cannot create resource "pods/exec" in API group "" in the namespace "svcconf-dns-x1y2z""#.into(),
            ..Default::default()
        };
        let err = kube::Error::Api(Box::new(status));
        assert_eq!(
            error_chain(&err),
            "missing permission: verb create on resource pods/exec of API group core (\"\") in namespace svcconf-dns-x1y2z, for system:serviceaccount:sonobuoy:svcconf (403 Forbidden; deploy/rbac.yaml lists what svcconf needs)"
        );
        let wrapped = KubeconfigError::Client("https://x".into(), err);
        assert_eq!(
            error_chain(&wrapped),
            "cannot build a client for https://x: missing permission: verb create on resource pods/exec of API group core (\"\") in namespace svcconf-dns-x1y2z, for system:serviceaccount:sonobuoy:svcconf (403 Forbidden; deploy/rbac.yaml lists what svcconf needs)"
        );
    }
}

//! Connecting the way kubectl does: `--kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`; `--context`, else the current context. Each way this can
//! go wrong is its own error, checked before any case runs.

use std::path::PathBuf;
use std::time::Duration;

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
    #[error("cannot build a client for {0}")]
    Client(String, #[source] kube::Error),
    #[error("API server {server} is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
}

impl KubeconfigSource {
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
    let server = config.cluster_url.to_string();
    let client =
        Client::try_from(config).map_err(|e| KubeconfigError::Client(server.clone(), e))?;
    match tokio::time::timeout(REACH_DEADLINE, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(KubeconfigError::Unreachable {
            server,
            reason: error_chain(&e),
        }),
        Err(_) => Err(KubeconfigError::Unreachable {
            server,
            reason: format!("no answer within {}s", REACH_DEADLINE.as_secs()),
        }),
    }
}

/// `err: cause: cause`, as one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
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
        let kubeconfig = self.read()?;
        connect(kubeconfig, self.context.as_deref(), &self.origin()).await
    }
}

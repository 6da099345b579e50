//! Running a command in a pod (the `ws` exec subresource), stdout and stderr
//! read concurrently, with a deadline.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use kube::{Api, Client};
use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec in pod {pod} failed")]
    Start {
        pod: String,
        #[source]
        source: kube::Error,
    },
    /// RBAC refused the exec: the permission named.
    #[error("exec in pod {pod} refused: {permission}")]
    Forbidden {
        pod: String,
        permission: crate::kube::rbac::MissingPermission,
    },
    #[error("exec in pod {pod} did not finish within {}s", .after.as_secs())]
    Timeout { pod: String, after: Duration },
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    /// `Success`, or the failure the API server reported (exit code included).
    pub status: String,
}

pub async fn exec(
    client: &Client,
    namespace: &str,
    pod: &str,
    command: &[String],
    deadline: Duration,
) -> Result<ExecOutput, ExecError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let run = async {
        let params = AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let mut attached = pods
            .exec(pod, command.to_vec(), &params)
            .await
            .map_err(|source| {
                match crate::kube::rbac::refused(&source, "create", "pods/exec", namespace) {
                    Some(permission) => ExecError::Forbidden {
                        pod: pod.to_string(),
                        permission,
                    },
                    None => ExecError::Start {
                        pod: pod.to_string(),
                        source,
                    },
                }
            })?;
        let mut stdout = attached.stdout();
        let mut stderr = attached.stderr();
        let status = attached.take_status();
        let mut out = Vec::new();
        let mut err = Vec::new();
        // Both pipes at once: a full stderr must not block stdout.
        let _ = tokio::join!(
            async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            },
            async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            }
        );
        let status = match status {
            Some(s) => s
                .await
                .map(|s| describe_status(&s))
                .unwrap_or_else(|| "no status".into()),
            None => "no status".into(),
        };
        let _ = attached.join().await;
        Ok(ExecOutput {
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            status,
        })
    };
    tokio::time::timeout(deadline, run)
        .await
        .map_err(|_| ExecError::Timeout {
            pod: pod.to_string(),
            after: deadline,
        })?
}

fn describe_status(status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status) -> String {
    match status.status.as_deref() {
        Some("Success") => "Success".into(),
        _ => status.message.clone().unwrap_or_else(|| "Failure".into()),
    }
}

//! One fresh namespace per case run, labelled as svcconf's so cleanup finds
//! every one of them without a state file.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};

/// The label key on everything svcconf creates (namespaces, containers).
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "svcconf";
pub const RUN_KEY: &str = "svcconf.io/run";
pub const CASE_KEY: &str = "svcconf.io/case";
/// Annotations naming the host and process of the run that made a
/// namespace, so a later run on that host can tell a dead run's leftovers.
const HOST_KEY: &str = "svcconf.io/host";
const PID_KEY: &str = "svcconf.io/pid";
/// The annotation holding what a case run must undo outside its namespace
/// (JSON), written as each change is made, so the run after a `kill -9`
/// can undo it.
pub const UNDO_KEY: &str = "svcconf.io/undo";

/// This host's name, as the annotations record it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Five lowercase letters/digits, as Kubernetes' generateName does.
pub fn random_suffix() -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), 5)
        .to_ascii_lowercase()
}

/// `svcconf-<case>-<random5>`.
pub fn namespace_name(case: &str) -> String {
    format!("svcconf-{case}-{}", random_suffix())
}

/// Creates the namespace for one run of `case`. Pod Security `restricted` is
/// enforced: the fixtures' probe pods run as non-root with nothing added, and
/// this proves it.
pub async fn create(
    client: &Client,
    case: &str,
    run_id: &str,
    pod_security: &str,
) -> Result<String, kube::Error> {
    let name = namespace_name(case);
    let labels = BTreeMap::from([
        (MANAGED_BY_KEY.to_string(), MANAGED_BY.to_string()),
        (RUN_KEY.to_string(), run_id.to_string()),
        (CASE_KEY.to_string(), case.to_string()),
        (
            "pod-security.kubernetes.io/enforce".to_string(),
            pod_security.to_string(),
        ),
    ]);
    let annotations = BTreeMap::from([
        (HOST_KEY.to_string(), host()),
        (PID_KEY.to_string(), std::process::id().to_string()),
    ]);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(name)
}

/// Deletes a namespace; one already gone is fine.
pub async fn delete(client: &Client, name: &str) -> Result<(), kube::Error> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes every namespace of run `run_id` (or of any svcconf run when
/// `None`), and with a `deadline` waits up to it for them to be gone.
/// Returns the names.
pub async fn delete_all(
    client: &Client,
    run_id: Option<&str>,
    deadline: Option<Duration>,
) -> Result<Vec<String>, kube::Error> {
    let api = Api::<Namespace>::all(client.clone());
    let selector = match run_id {
        Some(id) => format!("{MANAGED_BY_KEY}={MANAGED_BY},{RUN_KEY}={id}"),
        None => format!("{MANAGED_BY_KEY}={MANAGED_BY}"),
    };
    let names: Vec<String> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    for name in &names {
        delete(client, name).await?;
    }
    let Some(deadline) = deadline else {
        return Ok(names);
    };
    let _ = super::wait::until_config(
        api,
        kube::runtime::watcher::Config::default().labels(&selector),
        format!("namespaces {selector} deleted"),
        deadline,
        |left: &[&Namespace]| super::wait::Progress {
            done: left.is_empty(),
            status: format!("{} left", left.len()),
        },
    )
    .await;
    Ok(names)
}

/// The namespaces that runs on this host which died (`kill -9`) left
/// behind: made here, by a process that no longer lives, and not already
/// going. Runs of other hosts, and live runs, are left alone.
pub async fn leftovers(client: &Client) -> Result<Vec<Namespace>, kube::Error> {
    let api = Api::<Namespace>::all(client.clone());
    let owned = ListParams::default().labels(&format!("{MANAGED_BY_KEY}={MANAGED_BY}"));
    let here = host();
    let dead = |ns: &Namespace| {
        let annotations = ns.annotations();
        annotations.get(HOST_KEY) == Some(&here)
            && annotations
                .get(PID_KEY)
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    Ok(api
        .list(&owned)
        .await?
        .items
        .into_iter()
        .filter(|ns| dead(ns) && ns.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Sets one annotation of a namespace.
pub async fn annotate(
    client: &Client,
    name: &str,
    key: &str,
    value: &str,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_dns_labels() {
        let name = super::namespace_name("clusterip-basic");
        assert!(name.starts_with("svcconf-clusterip-basic-"));
        assert_eq!(name.len(), "svcconf-clusterip-basic-".len() + 5);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    }
}

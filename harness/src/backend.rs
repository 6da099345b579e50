//! The one backend fixture (`fixtures/common/backend.yaml`) and the small
//! declaration a case's fixture tweaks it with, instead of a copy of ~50
//! lines per case:
//!
//! ```yaml
//! apiVersion: svcconf.io/v1
//! kind: Backend
//! metadata: {name: web}    # the workload's name and its pods' `app` label
//! spec:
//!   workload: StatefulSet  # Deployment (default), DaemonSet, StatefulSet
//!   replicas: 2            # default 3; a DaemonSet has one per node
//!   labels: {tier: a}      # more pod labels (`app` is the name's)
//!   args: ["--http-port", "8443"]   # after `serve --http-port 8080`
//!   ports: [{name: https, containerPort: 8443}]
//!   env: [{name: X, value: "1"}]
//!   readinessPeriodSeconds: 1
//!   terminationGracePeriodSeconds: 60
//!   preStopSleepSeconds: 45
//!   resources: {requests: {cpu: 1m, memory: 8Mi}}
//! ```
//!
//! The catalog expands every declaration when it reads a fixture, so the
//! cluster, steps and sabotages only ever see the workload. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

/// The declaration's `apiVersion` and `kind`.
pub const API_VERSION: &str = "svcconf.io/v1";
pub const KIND: &str = "Backend";
/// The base workload, relative to `fixtures/`.
pub const FIXTURE: &str = "common/backend.yaml";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Workload {
    #[default]
    Deployment,
    DaemonSet,
    /// Governed by a Service of the backend's name (pods get DNS names
    /// `<name>-N.<name>`), started in parallel like a Deployment.
    StatefulSet,
}

/// What a declaration may change; anything else is refused at load.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendSpec {
    #[serde(default)]
    pub workload: Workload,
    /// A number, or a share of the cluster's EndpointSlice size limit
    /// (`"${maxEndpointsPerSlice:120%}"`, rendered when the case runs).
    pub replicas: Option<crate::model::Count>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub ports: Vec<Value>,
    #[serde(default)]
    pub env: Vec<Value>,
    pub readiness_period_seconds: Option<u32>,
    pub termination_grace_period_seconds: Option<u32>,
    pub pre_stop_sleep_seconds: Option<u32>,
    pub resources: Option<Value>,
}

/// Whether `doc` is a backend declaration rather than a Kubernetes object.
pub fn is_declaration(doc: &Value) -> bool {
    doc["apiVersion"] == API_VERSION && doc["kind"] == KIND
}

/// The workload `declaration` stands for: `base` (the backend fixture's one
/// Deployment) renamed and changed as the declaration says. The error is
/// one line naming what is wrong.
pub fn expand(base: &Value, declaration: &Value) -> Result<Value, String> {
    let name = declaration["metadata"]["name"]
        .as_str()
        .ok_or("a Backend needs metadata.name")?;
    if let Some(extra) = declaration["metadata"]
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "name"))
    {
        return Err(format!(
            "Backend {name}: metadata.{extra} is not taken (only metadata.name)"
        ));
    }
    let spec: BackendSpec = match declaration.get("spec") {
        None | Some(Value::Null) => BackendSpec::default(),
        Some(spec) => serde_json::from_value(spec.clone())
            .map_err(|e| format!("Backend {name}: spec: {e}"))?,
    };
    if spec.labels.contains_key("app") {
        return Err(format!(
            "Backend {name}: spec.labels.app is the Backend's name; pick another label"
        ));
    }
    let mut out = base.clone();
    let app = json!({ "app": name });
    out["kind"] = json!(format!("{:?}", spec.workload));
    out["metadata"]["name"] = json!(name);
    out["metadata"]["labels"] = app.clone();
    out["spec"]["selector"]["matchLabels"] = app;
    let labels = &mut out["spec"]["template"]["metadata"]["labels"];
    *labels = json!({ "app": name });
    for (key, value) in &spec.labels {
        labels[key] = json!(value);
    }
    let workload = out["spec"]
        .as_object_mut()
        .ok_or("the backend fixture has no spec")?;
    match spec.workload {
        Workload::DaemonSet => {
            if spec.replicas.is_some() {
                return Err(format!(
                    "Backend {name}: a DaemonSet has one pod per node; drop spec.replicas"
                ));
            }
            workload.remove("replicas");
        }
        Workload::Deployment | Workload::StatefulSet => {
            if let Some(replicas) = spec.replicas {
                workload.insert("replicas".into(), json!(replicas));
            }
        }
    }
    if spec.workload == Workload::StatefulSet {
        workload.insert("serviceName".into(), json!(name));
        workload.insert("podManagementPolicy".into(), json!("Parallel"));
    }
    let pod = &mut out["spec"]["template"]["spec"];
    if let Some(seconds) = spec.termination_grace_period_seconds {
        pod["terminationGracePeriodSeconds"] = json!(seconds);
    }
    let container = pod["containers"]
        .get_mut(0)
        .ok_or("the backend fixture has no container")?;
    extend(
        &mut container["args"],
        spec.args.into_iter().map(Value::from),
    );
    extend(&mut container["ports"], spec.ports);
    extend(&mut container["env"], spec.env);
    if let Some(seconds) = spec.readiness_period_seconds {
        container["readinessProbe"]["periodSeconds"] = json!(seconds);
    }
    if let Some(seconds) = spec.pre_stop_sleep_seconds {
        container["lifecycle"] = json!({ "preStop": { "sleep": { "seconds": seconds } } });
    }
    if let Some(resources) = spec.resources {
        container["resources"] = resources;
    }
    Ok(out)
}

fn extend(list: &mut Value, items: impl IntoIterator<Item = Value>) {
    if let Value::Array(list) = list {
        list.extend(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        let text = include_str!("../../fixtures/common/backend.yaml");
        serde_saphyr::from_str(text).unwrap()
    }

    fn declare(spec: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn a_bare_declaration_is_the_fixture_renamed() {
        let out = expand(&base(), &declare(Value::Null)).unwrap();
        assert_eq!(out["kind"], "Deployment");
        assert_eq!(out["metadata"]["name"], "web");
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["selector"]["matchLabels"],
            json!({"app": "web"})
        );
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web"})
        );
        let container = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["args"], json!(["serve", "--http-port", "8080"]));
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
    }

    #[test]
    fn tweaks_land_where_the_workload_reads_them() {
        let spec = json!({
            "workload": "StatefulSet", "replicas": 2, "labels": {"tier": "a"},
            "args": ["--udp-port", "8081"],
            "ports": [{"name": "echo", "containerPort": 8081, "protocol": "UDP"}],
            "env": [{"name": "X", "value": "1"}], "readinessPeriodSeconds": 1,
            "terminationGracePeriodSeconds": 60, "preStopSleepSeconds": 45,
            "resources": {"requests": {"cpu": "1m"}},
        });
        let out = expand(&base(), &declare(spec)).unwrap();
        assert_eq!(out["kind"], "StatefulSet");
        assert_eq!(out["spec"]["serviceName"], "web");
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(out["spec"]["template"]["metadata"]["labels"]["tier"], "a");
        let pod = &out["spec"]["template"]["spec"];
        assert_eq!(pod["terminationGracePeriodSeconds"], 60);
        let container = &pod["containers"][0];
        assert_eq!(
            container["args"],
            json!(["serve", "--http-port", "8080", "--udp-port", "8081"])
        );
        assert_eq!(container["ports"][1]["protocol"], "UDP");
        assert_eq!(container["env"][1]["name"], "X");
        assert_eq!(container["readinessProbe"]["periodSeconds"], 1);
        assert_eq!(container["lifecycle"]["preStop"]["sleep"]["seconds"], 45);
        assert_eq!(container["resources"], json!({"requests": {"cpu": "1m"}}));
    }

    #[test]
    fn a_daemonset_has_no_replicas() {
        let out = expand(&base(), &declare(json!({"workload": "DaemonSet"}))).unwrap();
        assert_eq!(out["kind"], "DaemonSet");
        assert!(out["spec"].get("replicas").is_none());
        let err = expand(
            &base(),
            &declare(json!({"workload": "DaemonSet", "replicas": 2})),
        )
        .unwrap_err();
        assert!(err.contains("drop spec.replicas"), "{err}");
    }

    #[test]
    fn a_misspelt_tweak_is_refused_by_name() {
        let err = expand(&base(), &declare(json!({"replica": 2}))).unwrap_err();
        assert!(
            err.starts_with("Backend web: spec: unknown field `replica`"),
            "{err}"
        );
        let err = expand(&base(), &declare(json!({"labels": {"app": "x"}}))).unwrap_err();
        assert!(err.contains("spec.labels.app"), "{err}");
    }
}

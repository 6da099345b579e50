//! Server-side apply of fixture objects into a case's namespace, with the
//! API resource of each kind found through discovery (cached per kind).

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiCapabilities, Scope};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::model::{scaled, ObjectPatch};

pub const FIELD_MANAGER: &str = "svcconf";
const CRD_DEADLINE: Duration = Duration::from_secs(60);

/// Attempts of one apply the API server answered with a storage timeout.
const APPLY_ATTEMPTS: u32 = 4;

/// The API server could not reach its storage in time (etcd under load, as
/// in an emulated VM): a 500, 503 or 504, or the ClusterIP allocator's 422
/// `failed to allocate IP: etcdserver: request timed out`. A server-side
/// apply is idempotent, so the same apply may simply be sent again.
fn storage_timeout(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => {
            matches!(status.code, 500 | 503 | 504)
                || status.message.contains("etcdserver: request timed out")
        }
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{kind} {name}: the cluster does not serve {api_version}")]
    Unknown {
        api_version: String,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "{kind} {name} is cluster-scoped; fixtures may only hold namespaced objects (and CRDs)"
    )]
    ClusterScoped { kind: String, name: String },
    #[error("{kind} {name}: apply refused")]
    Refused {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name}: not a valid object")]
    Malformed {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("CustomResourceDefinition {name} not Established within {}s", scaled(CRD_DEADLINE).as_secs())]
    CrdNotEstablished { name: String },
}

/// `(apiVersion, kind, name)` of an object, empty where missing (the
/// manifest parser has already refused objects without them).
fn identity(doc: &Value) -> (&str, String, String) {
    let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        doc["apiVersion"].as_str().unwrap_or_default(),
        field(&doc["kind"]),
        field(&doc["metadata"]["name"]),
    )
}

impl ApplyError {
    /// What a document that is no object of the API turns into.
    fn malformed(kind: &str, name: &str) -> impl FnOnce(serde_json::Error) -> Self {
        let (kind, name) = (kind.to_string(), name.to_string());
        move |source| ApplyError::Malformed { kind, name, source }
    }
}

/// Applies objects; remembers what discovery said about each kind.
pub struct Applier {
    client: Client,
    resources: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Applier {
            client,
            resources: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if let Some(found) = self.resources.lock().await.get(&gvk) {
            return Ok(found.clone());
        }
        let found = discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|source| ApplyError::Unknown {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                source,
            })?;
        self.resources.lock().await.insert(gvk, found.clone());
        Ok(found)
    }

    fn api(&self, namespace: &str, ar: &ApiResource, caps: &ApiCapabilities) -> Api<DynamicObject> {
        if caps.scope == Scope::Namespaced {
            Api::namespaced_with(self.client.clone(), namespace, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        }
    }

    /// Server-side applies `doc` into `namespace` (force: svcconf owns
    /// every field it sets). A CRD is waited on until Established, so the
    /// objects after it can use it.
    pub async fn apply(&self, namespace: &str, doc: &Value) -> Result<(), ApplyError> {
        self.apply_scoped(Some(namespace), doc).await
    }

    /// Server-side applies `doc` where it says (its own namespace, or the
    /// cluster): for add-ons such as MetalLB, which are cluster-wide.
    pub async fn apply_cluster_object(&self, doc: &Value) -> Result<(), ApplyError> {
        self.apply_scoped(None, doc).await
    }

    async fn apply_scoped(&self, case_ns: Option<&str>, doc: &Value) -> Result<(), ApplyError> {
        let (api_version, kind, name) = identity(doc);
        let (ar, caps) = self.resolve(api_version, &kind, &name).await?;
        let is_crd = kind == "CustomResourceDefinition";
        if caps.scope != Scope::Namespaced && !is_crd && case_ns.is_some() {
            return Err(ApplyError::ClusterScoped { kind, name });
        }
        let namespace = case_ns
            .or(doc["metadata"]["namespace"].as_str())
            .unwrap_or("default");
        let object: DynamicObject =
            serde_json::from_value(doc.clone()).map_err(ApplyError::malformed(&kind, &name))?;
        let api = self.api(namespace, &ar, &caps);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut attempt = 1;
        loop {
            match api.patch(&name, &params, &Patch::Apply(&object)).await {
                Err(e) if storage_timeout(&e) && attempt < APPLY_ATTEMPTS => {
                    tokio::time::sleep(scaled(Duration::from_secs(u64::from(attempt)))).await;
                    attempt += 1;
                }
                Err(source) => return Err(ApplyError::Refused { kind, name, source }),
                Ok(_) => break,
            }
        }
        if is_crd {
            let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
            let established = await_condition(crds, &name, conditions::is_crd_established());
            match tokio::time::timeout(scaled(CRD_DEADLINE), established).await {
                Ok(Ok(_)) => {
                    // New kinds: forget cached discovery answers.
                    self.resources.lock().await.clear();
                }
                _ => return Err(ApplyError::CrdNotEstablished { name }),
            }
        }
        Ok(())
    }

    /// Creates `doc` in `namespace` with `dryRun=All`: the API server
    /// validates and admits it as it would a real create, and writes
    /// nothing. `Err` carries its refusal.
    pub async fn dry_run_create(&self, namespace: &str, doc: &Value) -> Result<(), ApplyError> {
        let (api_version, kind, name) = identity(doc);
        let (ar, caps) = self.resolve(api_version, &kind, &name).await?;
        let object: DynamicObject =
            serde_json::from_value(doc.clone()).map_err(ApplyError::malformed(&kind, &name))?;
        let params = kube::api::PostParams {
            dry_run: true,
            ..Default::default()
        };
        self.api(namespace, &ar, &caps)
            .create(&params, &object)
            .await
            .map(|_| ())
            .map_err(|source| ApplyError::Refused { kind, name, source })
    }

    /// Deletes the object `doc` names (in its own namespace, or the
    /// cluster); one already gone is fine.
    pub async fn delete_object(&self, doc: &Value) -> Result<(), ApplyError> {
        let (api_version, kind, name) = identity(doc);
        let (ar, caps) = self.resolve(api_version, &kind, &name).await?;
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        match self
            .api(namespace, &ar, &caps)
            .delete(&name, &kube::api::DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(ApplyError::Refused { kind, name, source }),
        }
    }

    /// The warnings the API server answers a no-op update of one object
    /// with (an empty merge patch, `dryRun=All`: nothing is written). They
    /// are what any write of the object as it stands would be told: a
    /// deprecated field value, a deprecated API (v1 Endpoints).
    pub async fn update_warnings(
        &self,
        namespace: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<String>, ApplyError> {
        let refused = |source| ApplyError::Refused {
            kind: kind.to_string(),
            name: name.to_string(),
            source,
        };
        let (ar, caps) = self.resolve(api_version, kind, name).await?;
        let api = self.api(namespace, &ar, &caps);
        let params = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        let request = kube::core::Request::new(api.resource_url())
            .patch(name, &params, &Patch::Merge(serde_json::json!({})))
            .map_err(|e| refused(kube::Error::BuildRequest(e)))?;
        let response = self
            .client
            .send(request.map(kube::client::Body::from))
            .await
            .map_err(refused)?;
        let status = response.status();
        let warnings = response
            .headers()
            .get_all(http::header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(warning_text)
            .collect();
        if !status.is_success() {
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let status = serde_json::from_str::<kube::core::Status>(&body).unwrap_or_else(|_| {
                kube::core::Status::failure(&body, "").with_code(status.as_u16())
            });
            return Err(refused(kube::Error::Api(Box::new(status))));
        }
        Ok(warnings)
    }

    /// Applies a JSON merge patch (a case's sabotage) to one object.
    pub async fn merge_patch(
        &self,
        namespace: &str,
        patch: &ObjectPatch,
    ) -> Result<(), ApplyError> {
        let (ar, caps) = self
            .resolve(&patch.api_version, &patch.kind, &patch.name)
            .await?;
        let api = self.api(patch.namespace.as_deref().unwrap_or(namespace), &ar, &caps);
        let params = PatchParams::default();
        let merge = Patch::Merge(&patch.merge);
        if patch.status {
            api.patch_status(&patch.name, &params, &merge).await
        } else {
            api.patch(&patch.name, &params, &merge).await
        }
        .map_err(|source| ApplyError::Refused {
            kind: patch.kind.clone(),
            name: patch.name.clone(),
            source,
        })?;
        Ok(())
    }
}

/// The text of one `Warning` header as the API server writes it
/// (`299 - "text"`, RFC 7234's warn-code, agent and quoted text).
fn warning_text(header: &str) -> String {
    let quoted = header
        .splitn(3, ' ')
        .nth(2)
        .filter(|q| q.len() >= 2 && q.starts_with('"') && q.ends_with('"'));
    match quoted {
        Some(q) => q[1..q.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\"),
        None => header.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{storage_timeout, warning_text};
    use kube::core::Status;

    #[test]
    fn an_apply_is_sent_again_only_after_a_storage_timeout() {
        let api = |code, message: &str| {
            kube::Error::Api(Status::failure(message, "").with_code(code).boxed())
        };
        // Seen in the ipvs VM lane: the ClusterIP allocator's 422.
        assert!(storage_timeout(&api(
            422,
            "Service \"other\" is invalid: spec.clusterIPs: Invalid value: [\"\"]: failed to allocate IP: etcdserver: request timed out"
        )));
        assert!(storage_timeout(&api(
            504,
            "the server was unable to return a response in the time allotted"
        )));
        assert!(!storage_timeout(&api(
            422,
            "spec.ports[0].port: Invalid value: 0"
        )));
        assert!(!storage_timeout(&api(403, "forbidden")));
    }

    #[test]
    fn reads_warning_headers() {
        assert_eq!(
            warning_text(
                r#"299 - "spec.trafficDistribution: \"PreferClose\" is deprecated; use \"PreferSameZone\"""#
            ),
            r#"spec.trafficDistribution: "PreferClose" is deprecated; use "PreferSameZone""#
        );
        assert_eq!(
            warning_text(
                r#"299 - "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice""#
            ),
            "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
        );
        assert_eq!(warning_text("garbled"), "garbled");
    }
}

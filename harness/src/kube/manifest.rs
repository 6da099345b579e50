//! Plain Kubernetes YAML as svcconf reads it: multi-document files with the
//! empty documents dropped, and every container image passed through the
//! image override map. Pure: no cluster, no files.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::IpFamily;

/// A manifest that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}: malformed YAML")]
    Yaml {
        origin: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{origin}: document {index}: {problem}")]
    Invalid {
        origin: String,
        index: usize,
        problem: String,
    },
    #[error("{origin}: the image map must be a mapping of image to image")]
    ImageMap {
        origin: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
}

/// Parses a multi-document YAML manifest into objects, dropping empty
/// documents (a lone `---`, comments only) and refusing documents that are
/// not Kubernetes objects.
pub fn parse_documents(origin: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|source| ManifestError::Yaml {
            origin: origin.to_string(),
            source: Box::new(source),
        })?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let invalid = |problem: &str| ManifestError::Invalid {
            origin: origin.to_string(),
            index: index + 1,
            problem: problem.to_string(),
        };
        if !doc.is_object() {
            return Err(invalid("not a mapping"));
        }
        for field in ["apiVersion", "kind"] {
            if !doc[field].is_string() {
                return Err(invalid(&format!("no {field}")));
            }
        }
        if !doc["metadata"]["name"].is_string() {
            return Err(invalid("no metadata.name"));
        }
        if doc["metadata"]["namespace"].is_string() {
            // Each case gets a fresh namespace; a pinned one would escape it.
            return Err(invalid(
                "sets metadata.namespace; fixtures are applied into the case's namespace",
            ));
        }
        out.push(doc);
    }
    if out.is_empty() {
        return Err(ManifestError::Invalid {
            origin: origin.to_string(),
            index: 0,
            problem: "no objects".into(),
        });
    }
    Ok(out)
}

/// Parses a release manifest (an add-on such as MetalLB): unlike a fixture,
/// its objects say their own namespace and may be cluster-scoped.
pub fn parse_release(origin: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|source| ManifestError::Yaml {
            origin: origin.to_string(),
            source: Box::new(source),
        })?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if let Some(index) = docs
        .iter()
        .position(|d| !d["kind"].is_string() || !d["metadata"]["name"].is_string())
    {
        return Err(ManifestError::Invalid {
            origin: origin.to_string(),
            index: index + 1,
            problem: "no kind or no metadata.name".into(),
        });
    }
    Ok(docs)
}

/// Image → image replacements, applied to every container of every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMap(BTreeMap<String, String>);

impl ImageMap {
    /// Reads a YAML (or JSON) mapping `image: replacement`.
    pub fn parse(origin: &str, text: &str) -> Result<Self, ManifestError> {
        let map: Option<BTreeMap<String, String>> =
            serde_saphyr::from_str(text).map_err(|source| ManifestError::ImageMap {
                origin: origin.to_string(),
                source: Box::new(source),
            })?;
        Ok(ImageMap(map.unwrap_or_default()))
    }

    /// Adds a replacement unless one is already set for `from`: entries from
    /// the user's map win over defaults.
    pub fn insert_default(&mut self, from: &str, to: &str) {
        self.0
            .entry(from.to_string())
            .or_insert_with(|| to.to_string());
    }

    pub fn insert(&mut self, from: &str, to: &str) {
        self.0.insert(from.to_string(), to.to_string());
    }

    pub fn resolve<'a>(&'a self, image: &'a str) -> &'a str {
        self.0.get(image).map(String::as_str).unwrap_or(image)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }
}

/// Rewrites every container image in `doc` (any workload kind: the walk finds
/// every `containers`, `initContainers` and `ephemeralContainers` list).
pub fn map_images(doc: &mut Value, map: &ImageMap) {
    visit_containers(doc, &mut |container| {
        if let Some(Value::String(image)) = container.get_mut("image") {
            *image = map.resolve(image).to_string();
        }
    });
}

/// `doc` made to run in `family`: an EndpointSlice of addresses
/// (`addressType` IPv4 or IPv6) gets the family's type; on a dual-stack
/// cluster (`dual_stack`) a Service that does not choose its families
/// itself (no `ipFamilies`, no `ipFamilyPolicy`; not ExternalName) gets
/// `ipFamilyPolicy: SingleStack` and `ipFamilies: [family]`. Anything else
/// is returned as it is.
pub fn in_family(doc: &Value, family: IpFamily, dual_stack: bool) -> Value {
    let mut doc = doc.clone();
    let kind = (doc["apiVersion"].as_str(), doc["kind"].as_str());
    if kind == (Some("discovery.k8s.io/v1"), Some("EndpointSlice")) {
        if let Some(t) = doc.get_mut("addressType") {
            if t == "IPv4" || t == "IPv6" {
                *t = family.kubernetes().into();
            }
        }
        return doc;
    }
    if kind != (Some("v1"), Some("Service")) || !dual_stack {
        return doc;
    }
    let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) else {
        return doc;
    };
    let chooses = spec.contains_key("ipFamilies") || spec.contains_key("ipFamilyPolicy");
    if chooses || spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        return doc;
    }
    spec.insert("ipFamilyPolicy".into(), "SingleStack".into());
    spec.insert(
        "ipFamilies".into(),
        serde_json::json!([family.kubernetes()]),
    );
    doc
}

/// Every container image `doc` refers to.
pub fn images(doc: &Value) -> Vec<String> {
    let mut doc = doc.clone();
    let mut out = Vec::new();
    visit_containers(&mut doc, &mut |container| {
        if let Some(Value::String(image)) = container.get("image") {
            if !out.contains(image) {
                out.push(image.clone());
            }
        }
    });
    out
}

fn visit_containers(value: &mut Value, f: &mut impl FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                let is_list = matches!(
                    key.as_str(),
                    "containers" | "initContainers" | "ephemeralContainers"
                );
                if let (true, Value::Array(items)) = (is_list, &mut *child) {
                    for item in items.iter_mut() {
                        if let Value::Object(container) = item {
                            f(container);
                        }
                    }
                } else {
                    visit_containers(child, f);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| visit_containers(v, f)),
        _ => {}
    }
}

/// `patch` merged into `doc` as a JSON merge patch (RFC 7386) does it on
/// the API server: objects merge, `null` removes, anything else replaces.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Default::default());
    }
    let Value::Object(into) = doc else {
        return;
    };
    for (key, value) in fields {
        if value.is_null() {
            into.remove(key);
        } else {
            merge_patch(into.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_merges_objects_removes_nulls_and_replaces_the_rest() {
        let mut doc = serde_json::json!({"metadata": {"name": "7web", "labels": {"a": "1"}}, "spec": {"ports": [1]}});
        merge_patch(
            &mut doc,
            &serde_json::json!({"metadata": {"name": "web7", "labels": null}, "spec": {"ports": [2]}}),
        );
        assert_eq!(
            doc,
            serde_json::json!({"metadata": {"name": "web7"}, "spec": {"ports": [2]}})
        );
    }

    #[test]
    fn services_run_in_the_family_unless_they_choose() {
        let svc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(in_family(&svc, IpFamily::Ipv6, false), svc);
        let v6 = in_family(&svc, IpFamily::Ipv6, true);
        assert_eq!(v6["spec"]["ipFamilies"], serde_json::json!(["IPv6"]));
        assert_eq!(v6["spec"]["ipFamilyPolicy"], "SingleStack");
        let chooses = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"ipFamilyPolicy": "RequireDualStack"}});
        assert_eq!(in_family(&chooses, IpFamily::Ipv6, true), chooses);
        let external = serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "spec": {"type": "ExternalName", "externalName": "example.org"}});
        assert_eq!(in_family(&external, IpFamily::Ipv6, true), external);
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "spec": {}});
        assert_eq!(in_family(&pod, IpFamily::Ipv6, true), pod);
        let slice = serde_json::json!({"apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice", "addressType": "IPv4"});
        assert_eq!(
            in_family(&slice, IpFamily::Ipv6, false)["addressType"],
            "IPv6"
        );
        let fqdn = serde_json::json!({"apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice", "addressType": "FQDN"});
        assert_eq!(in_family(&fqdn, IpFamily::Ipv6, true), fqdn);
    }

    const FIXTURE: &str = r#"
---
# leading empty document
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: busybox}]
      containers:
        - name: probe
          image: svcconf/probe:dev
---
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: svcconf/probe:dev}]
...
"#;

    #[test]
    fn drops_empty_documents() {
        let docs = parse_documents("f.yaml", FIXTURE).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "Deployment");
        assert_eq!(docs[1]["kind"], "CronJob");
    }

    #[test]
    fn maps_every_container_image() {
        let mut docs = parse_documents("f.yaml", FIXTURE).unwrap();
        let map = ImageMap::parse(
            "map.yaml",
            "svcconf/probe:dev: svcconf/probe:abc123\nbusybox: mirror/busybox:1\n",
        )
        .unwrap();
        for doc in &mut docs {
            map_images(doc, &map);
        }
        assert_eq!(
            images(&docs[0]),
            vec!["svcconf/probe:abc123", "mirror/busybox:1"]
        );
        assert_eq!(images(&docs[1]), vec!["svcconf/probe:abc123"]);
    }

    #[test]
    fn user_entries_win_over_defaults() {
        let mut map = ImageMap::parse("map.json", r#"{"svcconf/probe:dev": "mine:1"}"#).unwrap();
        map.insert_default("svcconf/probe:dev", "kit:2");
        map.insert_default("other", "kit:3");
        assert_eq!(map.resolve("svcconf/probe:dev"), "mine:1");
        assert_eq!(map.resolve("other"), "kit:3");
        assert_eq!(map.resolve("untouched"), "untouched");
    }

    #[test]
    fn rejects_malformed_and_foreign_documents() {
        let err = parse_documents("bad.yaml", "kind: [unclosed\n").unwrap_err();
        assert!(matches!(err, ManifestError::Yaml { .. }), "{err}");
        assert!(err.to_string().starts_with("bad.yaml: malformed YAML"));
        let err = parse_documents(
            "x.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: kube-system}\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("metadata.namespace"), "{err}");
        let err = parse_documents("x.yaml", "---\n---\n").unwrap_err();
        assert!(err.to_string().contains("no objects"), "{err}");
        let err = parse_documents("x.yaml", "apiVersion: v1\nmetadata: {name: a}\n").unwrap_err();
        assert!(err.to_string().contains("document 1: no kind"), "{err}");
        assert!(ImageMap::parse("m.yaml", "- a\n- b\n").is_err());
    }
}

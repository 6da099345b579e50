//! Named wait predicates over watched objects. The caller applies the
//! deadline; on timeout the error names what did not happen and the last
//! state seen ("Deployment web in ns X: 1/3 available after 120s").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::Node;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// Where a wait stands: done or not, and the state in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub done: bool,
    pub status: String,
}

impl Progress {
    fn new(done: bool, status: impl Into<String>) -> Self {
        Progress {
            done,
            status: status.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{what}: {status} after {}s", .after.as_secs())]
    Deadline {
        what: String,
        status: String,
        after: Duration,
    },
}

/// Watches `api` (optionally narrowed by a field selector) until `predicate`
/// says done over the current set of objects, or `deadline` passes.
pub async fn until<K>(
    api: Api<K>,
    fields: Option<&str>,
    what: String,
    deadline: Duration,
    predicate: impl Fn(&[&K]) -> Progress,
) -> Result<(), WaitError>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = match fields {
        Some(f) => watcher::Config::default().fields(f),
        None => watcher::Config::default(),
    };
    until_config(api, config, what, deadline, predicate).await
}

/// [`until`] with a full watcher configuration (label selectors).
pub async fn until_config<K>(
    api: Api<K>,
    config: watcher::Config,
    what: String,
    deadline: Duration,
    predicate: impl Fn(&[&K]) -> Progress,
) -> Result<(), WaitError>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut status = "nothing observed yet".to_string();
    let watch = async {
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        let mut objects: BTreeMap<String, K> = BTreeMap::new();
        let mut init: BTreeMap<String, K> = BTreeMap::new();
        while let Some(event) = stream.next().await {
            match event {
                // Nothing is known until the initial list is complete: an
                // empty set here would satisfy "no endpoints" or "all gone".
                Ok(Event::Init) => {
                    init.clear();
                    continue;
                }
                Ok(Event::InitApply(o)) => {
                    init.insert(key(&o), o);
                    continue;
                }
                Ok(Event::InitDone) => objects = std::mem::take(&mut init),
                Ok(Event::Apply(o)) => {
                    objects.insert(key(&o), o);
                }
                Ok(Event::Delete(o)) => {
                    objects.remove(&key(&o));
                }
                Err(e) => {
                    status = format!("watch failing: {e}");
                    continue;
                }
            }
            let current: Vec<&K> = objects.values().collect();
            let progress = predicate(&current);
            status = progress.status;
            if progress.done {
                return;
            }
        }
    };
    let started = std::time::Instant::now();
    match tokio::time::timeout(deadline, watch).await {
        Ok(()) => {
            tracing::debug!(%what, seconds = started.elapsed().as_secs_f64(), "wait done");
            Ok(())
        }
        Err(_) => Err(WaitError::Deadline {
            what,
            status,
            after: deadline,
        }),
    }
}

fn key<K: Resource>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// All replicas of the Deployment `name` are updated and available.
pub fn deployment_available(name: &str) -> impl Fn(&[&Deployment]) -> Progress + '_ {
    move |objects| {
        let Some(d) = objects.iter().find(|d| d.name_any() == name) else {
            return Progress::new(false, "not found");
        };
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let available = status.available_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        let observed =
            status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        Progress::new(
            observed && available == want && updated == want,
            format!("{available}/{want} available"),
        )
    }
}

/// The DaemonSet `name` has an updated, ready pod on every node it targets.
pub fn daemonset_ready(name: &str) -> impl Fn(&[&DaemonSet]) -> Progress + '_ {
    move |objects| {
        let Some(d) = objects.iter().find(|d| d.name_any() == name) else {
            return Progress::new(false, "not found");
        };
        let s = d.status.clone().unwrap_or_default();
        let updated = s.updated_number_scheduled.unwrap_or(0);
        let done = s.desired_number_scheduled > 0
            && s.number_ready == s.desired_number_scheduled
            && updated == s.desired_number_scheduled;
        Progress::new(
            done,
            format!("{}/{} ready", s.number_ready, s.desired_number_scheduled),
        )
    }
}

/// At least `want` nodes exist and every node is Ready.
pub fn nodes_ready(want: usize) -> impl Fn(&[&Node]) -> Progress {
    move |nodes| {
        let not_ready: Vec<String> = nodes
            .iter()
            .filter(|n| {
                !n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .map(|n| n.name_any())
            .collect();
        let ready = nodes.len() - not_ready.len();
        let mut status = format!("{ready}/{want} nodes Ready");
        if !not_ready.is_empty() {
            status.push_str(&format!(" (not Ready: {})", not_ready.join(", ")));
        }
        Progress::new(nodes.len() >= want && not_ready.is_empty(), status)
    }
}

/// The EndpointSlices (read as dynamic objects, so the check works for every
/// API version's shape) hold exactly `ready` ready endpoints and, when
/// `ports` is not empty, exactly those target ports.
pub fn endpoint_slices_ready(
    ready: usize,
    ports: &[u16],
) -> impl Fn(&[&DynamicObject]) -> Progress + '_ {
    move |slices| {
        let (addresses, seen_ports) = ready_endpoints(slices);
        let want_ports: BTreeSet<u16> = ports.iter().copied().collect();
        let ports_ok = want_ports.is_empty()
            || (ready == 0 && seen_ports.is_empty())
            || seen_ports == want_ports;
        let list = |s: &BTreeSet<u16>| s.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let status = format!(
            "{}/{ready} ready endpoints in {} slices, ports [{}] (want [{}])",
            addresses.len(),
            slices.len(),
            list(&seen_ports),
            list(&want_ports)
        );
        Progress::new(addresses.len() == ready && ports_ok, status)
    }
}

/// Distinct ready endpoint addresses and the ports of the slices that hold them.
pub fn ready_endpoints(slices: &[&DynamicObject]) -> (BTreeSet<String>, BTreeSet<u16>) {
    let mut addresses = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for slice in slices {
        let endpoints = slice
            .data
            .get("endpoints")
            .and_then(|e| e.as_array())
            .cloned()
            .unwrap_or_default();
        let mut any = false;
        for endpoint in endpoints {
            // An unset `ready` condition means ready (discovery.k8s.io/v1).
            if endpoint["conditions"]["ready"].as_bool() == Some(false) {
                continue;
            }
            for address in endpoint["addresses"].as_array().into_iter().flatten() {
                if let Some(a) = address.as_str() {
                    addresses.insert(a.to_string());
                    any = true;
                }
            }
        }
        if any {
            for port in slice
                .data
                .get("ports")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(p) = port["port"].as_u64() {
                    ports.insert(p as u16);
                }
            }
        }
    }
    (addresses, ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ApiResource;

    fn slice(endpoints: serde_json::Value, ports: &[u16]) -> DynamicObject {
        let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
        ));
        let mut o = DynamicObject::new("web-abc", &ar);
        o.data = serde_json::json!({
            "endpoints": endpoints,
            "ports": ports.iter().map(|p| serde_json::json!({"name": "http", "port": p})).collect::<Vec<_>>(),
        });
        o
    }

    #[test]
    fn counts_ready_endpoints_and_their_ports() {
        let s = slice(
            serde_json::json!([
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.2"]},
                {"addresses": ["10.244.2.3"], "conditions": {"ready": false}},
            ]),
            &[8080],
        );
        let p = endpoint_slices_ready(2, &[8080])(&[&s]);
        assert!(p.done, "{p:?}");
        let p = endpoint_slices_ready(3, &[8080])(&[&s]);
        assert_eq!(
            p,
            Progress::new(
                false,
                "2/3 ready endpoints in 1 slices, ports [8080] (want [8080])"
            )
        );
        assert!(!endpoint_slices_ready(2, &[8080, 8443])(&[&s]).done);
    }

    #[test]
    fn no_endpoints_is_what_a_wrong_selector_waits_for() {
        let s = slice(serde_json::json!([]), &[]);
        assert!(endpoint_slices_ready(0, &[8080])(&[&s]).done);
        assert!(endpoint_slices_ready(0, &[])(&[]).done);
    }
}

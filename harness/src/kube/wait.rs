//! Named wait predicates over watched objects. The caller applies the
//! deadline; on timeout the error names what did not happen and the last
//! state seen ("Deployment web in ns X: 1/3 available after 120s").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::networking::v1::IPAddress;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::model::IpFamily;
use crate::template::{EndpointFact, SliceFact};

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
    /// The wait cannot start (the Service it reads is missing, or has no
    /// selector to find its pods by).
    #[error("{what}: {problem}")]
    Unusable { what: String, problem: String },
    /// Something happened that must not (a Service nothing implements got
    /// an address).
    #[error("{what}: {status}")]
    Unexpected { what: String, status: String },
}

/// Watches `api` (optionally narrowed by a field selector) until `predicate`
/// says done over the current set of objects, or `deadline` passes; `Ok`
/// carries the state that held, in the predicate's words (evidence).
pub async fn until<K>(
    api: Api<K>,
    fields: Option<&str>,
    what: String,
    deadline: Duration,
    predicate: impl Fn(&[&K]) -> Progress,
) -> Result<String, WaitError>
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
) -> Result<String, WaitError>
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
            Ok(status)
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
        // Pods of an older template still count here: a rollout is done when
        // they are gone (as `kubectl rollout status` has it), not when the
        // old pod alone makes the count.
        let total = status.replicas.unwrap_or(0);
        let observed =
            status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        let old = total - updated;
        Progress::new(
            observed && available == want && updated == want && total == want,
            match old {
                0 => format!("{available}/{want} available"),
                _ => format!("{available}/{want} available, {old} pods of an older template left"),
            },
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
        // A restart (a new template) counts only once the controller saw it.
        let observed = s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        let done = observed
            && s.desired_number_scheduled > 0
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
        let endpoints = endpoints_of(slice);
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

/// The objects one watch has shown, known once its initial list is complete.
struct Seen<K> {
    current: Option<BTreeMap<String, K>>,
    init: BTreeMap<String, K>,
}

impl<K: Resource> Seen<K> {
    fn new() -> Self {
        Seen {
            current: None,
            init: BTreeMap::new(),
        }
    }

    /// Takes in one event; a re-list replaces the set only when complete.
    fn apply(&mut self, event: Event<K>) {
        match event {
            Event::Init => self.init.clear(),
            Event::InitApply(o) => {
                self.init.insert(key(&o), o);
            }
            Event::InitDone => self.current = Some(std::mem::take(&mut self.init)),
            Event::Apply(o) => {
                if let Some(c) = &mut self.current {
                    c.insert(key(&o), o);
                }
            }
            Event::Delete(o) => {
                if let Some(c) = &mut self.current {
                    c.remove(&key(&o));
                }
            }
        }
    }

    fn objects(&self) -> Option<Vec<&K>> {
        self.current.as_ref().map(|c| c.values().collect())
    }
}

/// One event from either of two watches.
enum Either<A, B> {
    First(A),
    Second(B),
}

/// [`until_config`] over two kinds of objects watched at once (an endpoints
/// object and the pods it should list): `predicate` sees the current objects
/// of both, once both initial lists are complete.
pub async fn until_both<A, B>(
    first: (Api<A>, watcher::Config),
    second: (Api<B>, watcher::Config),
    what: String,
    deadline: Duration,
    predicate: impl Fn(&[&A], &[&B]) -> Progress,
) -> Result<String, WaitError>
where
    A: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    B: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut status = "nothing observed yet".to_string();
    let watch = async {
        let a = watcher::watcher(first.0, first.1)
            .default_backoff()
            .map(Either::First)
            .boxed();
        let b = watcher::watcher(second.0, second.1)
            .default_backoff()
            .map(Either::Second)
            .boxed();
        let mut stream = futures::stream::select(a, b);
        let (mut seen_a, mut seen_b) = (Seen::<A>::new(), Seen::<B>::new());
        while let Some(event) = stream.next().await {
            match event {
                Either::First(Ok(e)) => seen_a.apply(e),
                Either::Second(Ok(e)) => seen_b.apply(e),
                Either::First(Err(e)) | Either::Second(Err(e)) => {
                    status = format!("watch failing: {e}");
                    continue;
                }
            }
            let (Some(a), Some(b)) = (seen_a.objects(), seen_b.objects()) else {
                continue;
            };
            let progress = predicate(&a, &b);
            status = progress.status;
            if progress.done {
                return;
            }
        }
    };
    match tokio::time::timeout(deadline, watch).await {
        Ok(()) => Ok(status),
        Err(_) => Err(WaitError::Deadline {
            what,
            status,
            after: deadline,
        }),
    }
}

/// The IPs in `family` of the pods the endpoints controllers list as
/// ready: Ready condition True, not terminating, with an address.
pub fn ready_pod_ips(pods: &[&Pod], family: IpFamily) -> BTreeSet<String> {
    ready_statuses(pods)
        .filter_map(|s| pod_ip(s, family))
        .collect()
}

/// A pod's address in `family`: from `status.podIPs`, or `podIP` where
/// that list is missing.
pub fn pod_ip(status: &k8s_openapi::api::core::v1::PodStatus, family: IpFamily) -> Option<String> {
    match status.pod_ips.as_deref() {
        Some(listed) if !listed.is_empty() => family.pick(listed.iter().map(|i| &i.ip)),
        _ => status
            .pod_ip
            .as_deref()
            .filter(|ip| IpFamily::of(ip) == Some(family)),
    }
    .map(String::from)
}

/// The status of each Ready, not terminating pod.
fn ready_statuses<'a>(
    pods: &'a [&'a Pod],
) -> impl Iterator<Item = &'a k8s_openapi::api::core::v1::PodStatus> + 'a {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref())
        .filter(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The addresses of `family` among `addresses`.
fn in_family(addresses: &BTreeSet<String>, family: IpFamily) -> BTreeSet<String> {
    addresses
        .iter()
        .filter(|a| IpFamily::of(a) == Some(family))
        .cloned()
        .collect()
}

fn ip_list(ips: &BTreeSet<String>) -> String {
    ips.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The addresses an endpoints object lists as ready (`observed`, and those
/// it lists as not ready) against the Ready pods' IPs: done when the two
/// sets are equal and hold `want` addresses. The status names both sets and
/// the difference.
pub fn addresses_match_ready_pods(
    observed: &BTreeSet<String>,
    not_ready: &BTreeSet<String>,
    pod_ips: &BTreeSet<String>,
    want: usize,
) -> Progress {
    let mut status = format!(
        "ready addresses [{}], Ready pod IPs [{}] (want {want})",
        ip_list(observed),
        ip_list(pod_ips)
    );
    let listed_not_ready: BTreeSet<String> = observed.difference(pod_ips).cloned().collect();
    let missing: BTreeSet<String> = pod_ips.difference(observed).cloned().collect();
    if !listed_not_ready.is_empty() {
        status.push_str(&format!(
            "; listed but not a Ready pod: [{}]",
            ip_list(&listed_not_ready)
        ));
    }
    if !missing.is_empty() {
        status.push_str(&format!("; Ready but not listed: [{}]", ip_list(&missing)));
    }
    if !not_ready.is_empty() {
        status.push_str(&format!("; not-ready addresses [{}]", ip_list(not_ready)));
    }
    Progress::new(observed == pod_ips && pod_ips.len() == want, status)
}

/// The legacy Endpoints object `name` lists exactly the Ready pods' IPs as
/// `addresses` (the others, if anywhere, under `notReadyAddresses`), `want`
/// of them.
pub fn endpoints_match_ready_pods(
    name: &str,
    want: usize,
    family: IpFamily,
) -> impl Fn(&[&Endpoints], &[&Pod]) -> Progress + '_ {
    move |endpoints, pods| {
        let pod_ips = ready_pod_ips(pods, family);
        let Some(e) = endpoints.iter().find(|e| e.name_any() == name) else {
            return Progress::new(
                false,
                format!(
                    "no Endpoints object, Ready pod IPs [{}] (want {want})",
                    ip_list(&pod_ips)
                ),
            );
        };
        let (mut ready, mut not_ready) = (BTreeSet::new(), BTreeSet::new());
        for subset in e.subsets.iter().flatten() {
            ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
            not_ready.extend(
                subset
                    .not_ready_addresses
                    .iter()
                    .flatten()
                    .map(|a| a.ip.clone()),
            );
        }
        let (ready, not_ready) = (in_family(&ready, family), in_family(&not_ready, family));
        addresses_match_ready_pods(&ready, &not_ready, &pod_ips, want)
    }
}

/// Addresses of the EndpointSlices' endpoints whose `ready` condition is false.
pub fn unready_endpoints(slices: &[&DynamicObject]) -> BTreeSet<String> {
    slices
        .iter()
        .filter_map(|s| s.data.get("endpoints").and_then(|e| e.as_array()))
        .flatten()
        .filter(|e| e["conditions"]["ready"].as_bool() == Some(false))
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// The EndpointSlices' ready addresses in each of `families` are exactly
/// the Ready pods' IPs in it, `want` of them: one family's slices, or a
/// dual-stack Service's slices of both listing the same pods.
pub fn endpoint_slices_match_ready_pods(
    want: usize,
    families: Vec<IpFamily>,
) -> impl Fn(&[&DynamicObject], &[&Pod]) -> Progress {
    move |slices, pods| {
        let (ready, _) = ready_endpoints(slices);
        let unready = unready_endpoints(slices);
        let per_family: Vec<(IpFamily, Progress)> = families
            .iter()
            .map(|&family| {
                let progress = addresses_match_ready_pods(
                    &in_family(&ready, family),
                    &in_family(&unready, family),
                    &ready_pod_ips(pods, family),
                    want,
                );
                (family, progress)
            })
            .collect();
        let done = per_family.iter().all(|(_, p)| p.done);
        let status = match per_family.as_slice() {
            [(_, one)] => one.status.clone(),
            several => several
                .iter()
                .map(|(f, p)| format!("{f}: {}", p.status))
                .collect::<Vec<_>>()
                .join("; "),
        };
        Progress::new(done, format!("{status} in {} slices", slices.len()))
    }
}

/// No EndpointSlice and no Endpoints object (both watches are narrowed to
/// the Service, by label and by name).
pub fn no_endpoints(slices: &[&DynamicObject], endpoints: &[&Endpoints]) -> Progress {
    let mut found: Vec<String> = slices
        .iter()
        .map(|s| format!("EndpointSlice {}", s.name_any()))
        .collect();
    found.extend(endpoints.iter().map(|e| {
        let addresses: usize = e
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        format!("Endpoints {} ({addresses} addresses)", e.name_any())
    }));
    if found.is_empty() {
        Progress::new(true, "no EndpointSlice, no Endpoints object")
    } else {
        Progress::new(false, format!("found {}", found.join(", ")))
    }
}

/// The Service `name` has `spec.ipFamilies` equal to `want` (in order) and
/// one ClusterIP of each, in the same order (a headless one: no ClusterIP).
pub fn service_ip_families(
    name: &str,
    want: Vec<IpFamily>,
) -> impl Fn(&[&Service]) -> Progress + '_ {
    move |services| {
        let Some(svc) = services.iter().find(|s| s.name_any() == name) else {
            return Progress::new(false, "Service not found");
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let families = spec.ip_families.unwrap_or_default();
        let ips = spec.cluster_ips.unwrap_or_default();
        let of_ips: Vec<Option<IpFamily>> = ips.iter().map(|ip| IpFamily::of(ip)).collect();
        let named: Vec<Option<IpFamily>> = families
            .iter()
            .map(|f| IpFamily::from_kubernetes(f))
            .collect();
        let wanted: Vec<Option<IpFamily>> = want.iter().copied().map(Some).collect();
        // A headless Service's clusterIPs is ["None"]: its ipFamilies alone
        // say which families its EndpointSlices and DNS records carry.
        let headless = ips.iter().any(|ip| ip == "None");
        let done = named == wanted && (headless || of_ips == wanted);
        let kubernetes = |f: &[IpFamily]| f.iter().map(|f| f.kubernetes()).collect::<Vec<_>>();
        Progress::new(
            done,
            format!(
                "ipFamilyPolicy {}, ipFamilies [{}], clusterIPs [{}]; want ipFamilies and clusterIPs of [{}]",
                spec.ip_family_policy.as_deref().unwrap_or("unset"),
                families.join(", "),
                ips.join(", "),
                kubernetes(&want).join(", ")
            ),
        )
    }
}

/// The Service `name` exists and has no ClusterIP: `spec.clusterIP` and
/// `spec.clusterIPs` absent or empty.
pub fn service_without_cluster_ip(name: &str) -> impl Fn(&[&Service]) -> Progress + '_ {
    move |services| {
        let Some(svc) = services.iter().find(|s| s.name_any() == name) else {
            return Progress::new(false, "Service not found");
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        let mut ips: Vec<String> = spec
            .cluster_ip
            .into_iter()
            .filter(|ip| !ip.is_empty())
            .collect();
        for ip in spec.cluster_ips.into_iter().flatten() {
            if !ip.is_empty() && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        if ips.is_empty() {
            Progress::new(true, format!("type {kind}, no ClusterIP"))
        } else {
            Progress::new(
                false,
                format!("type {kind}, clusterIP {} (want none)", ips.join(", ")),
            )
        }
    }
}

/// The Service `name` of `namespace` has an IPAddress object for each of
/// its ClusterIPs, naming it as parent, and no other IPAddress names it.
pub fn service_ip_addresses<'a>(
    namespace: &'a str,
    name: &'a str,
) -> impl Fn(&[&Service], &[&IPAddress]) -> Progress + 'a {
    move |services, addresses| {
        let Some(svc) = services.iter().find(|s| s.name_any() == name) else {
            return Progress::new(false, "Service not found");
        };
        let ips: Vec<String> = svc
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ips.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|ip| !ip.is_empty() && ip != "None")
            .collect();
        if ips.is_empty() {
            return Progress::new(false, "no ClusterIP, so no IPAddress to hold");
        }
        // Object names are the canonical form of the address; compare parsed.
        let same =
            |a: &str, b: &str| match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>())
            {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            };
        let parent = |a: &IPAddress| {
            a.spec.as_ref().map(|s| {
                let p = &s.parent_ref;
                let group = p.group.as_deref().filter(|g| !g.is_empty());
                let resource = group.map_or(p.resource.clone(), |g| format!("{}.{g}", p.resource));
                format!(
                    "{resource}/{}/{}",
                    p.namespace.as_deref().unwrap_or(""),
                    p.name
                )
            })
        };
        let ours = format!("services/{namespace}/{name}");
        let mut problems = Vec::new();
        for ip in &ips {
            match addresses.iter().find(|a| same(&a.name_any(), ip)) {
                None => problems.push(format!("no IPAddress {ip}")),
                Some(a) => match parent(a) {
                    Some(p) if p == ours => {}
                    p => problems.push(format!(
                        "IPAddress {ip} names parent {}",
                        p.unwrap_or_else(|| "none".into())
                    )),
                },
            }
        }
        for a in addresses {
            if parent(a).as_deref() == Some(ours.as_str())
                && !ips.iter().any(|ip| same(&a.name_any(), ip))
            {
                problems.push(format!(
                    "IPAddress {} names it but is not one of its ClusterIPs",
                    a.name_any()
                ));
            }
        }
        let status = format!("ClusterIPs [{}]", ips.join(", "));
        if problems.is_empty() {
            Progress::new(
                true,
                format!("{status}, each an IPAddress with parent {ours}"),
            )
        } else {
            Progress::new(false, format!("{status}; {}", problems.join("; ")))
        }
    }
}

/// The ingress IPs (or host names) in a Service's load-balancer status.
pub fn ingress_addresses(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The Service has an EXTERNAL-IP.
pub fn load_balancer_ingress(name: &str) -> impl Fn(&[&Service]) -> Progress + '_ {
    move |services| match services.iter().find(|s| s.name_any() == name) {
        None => Progress::new(false, "no such Service"),
        Some(svc) => {
            let ingress = ingress_addresses(svc);
            if ingress.is_empty() {
                Progress::new(false, "no EXTERNAL-IP (Pending)")
            } else {
                Progress::new(true, format!("EXTERNAL-IP {}", ingress.join(",")))
            }
        }
    }
}

/// Exactly `want` of the pods are Ready.
pub fn ready_pods(want: usize) -> impl Fn(&[&Pod]) -> Progress {
    move |pods| {
        let ready = ready_statuses(pods)
            .filter(|s| s.pod_ip.as_ref().is_some_and(|ip| !ip.is_empty()))
            .count();
        Progress::new(
            ready == want,
            format!("{ready}/{} pods Ready (want {want})", pods.len()),
        )
    }
}

/// No ready endpoint, and exactly `want` terminating endpoints (each said
/// serving or not).
pub fn terminating_endpoints(want: usize) -> impl Fn(&[&DynamicObject]) -> Progress {
    move |slices| {
        let endpoints: Vec<serde_json::Value> =
            slices.iter().flat_map(|s| endpoints_of(s)).collect();
        let condition = |e: &serde_json::Value, c: &str| e["conditions"][c].as_bool();
        // An unset `ready` condition means ready (discovery.k8s.io/v1).
        let ready = endpoints
            .iter()
            .filter(|e| condition(e, "ready") != Some(false))
            .count();
        let terminating: Vec<&serde_json::Value> = endpoints
            .iter()
            .filter(|e| condition(e, "terminating") == Some(true))
            .collect();
        let serving = terminating
            .iter()
            .filter(|e| condition(e, "serving") == Some(true))
            .count();
        Progress::new(
            ready == 0 && terminating.len() == want,
            format!(
                "{ready} ready, {} terminating ({serving} of them serving) endpoints (want 0 and {want})",
                terminating.len()
            ),
        )
    }
}

fn endpoints_of(slice: &DynamicObject) -> Vec<serde_json::Value> {
    slice
        .data
        .get("endpoints")
        .and_then(|e| e.as_array())
        .cloned()
        .unwrap_or_default()
}

/// One slice read for the verdict: each endpoint's first address, its
/// `ready` condition (unset means ready) and the pod it names.
pub fn slice_fact(slice: &DynamicObject) -> SliceFact {
    SliceFact {
        name: slice.name_any(),
        endpoints: endpoints_of(slice)
            .iter()
            .map(|e| EndpointFact {
                address: e["addresses"][0].as_str().unwrap_or_default().to_string(),
                ready: e["conditions"]["ready"].as_bool() != Some(false),
                pod: e["targetRef"]["name"].as_str().map(str::to_string),
            })
            .collect(),
    }
}

/// No pod is left.
pub fn no_pods(pods: &[&Pod]) -> Progress {
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    Progress::new(
        names.is_empty(),
        format!("{} pods left: {}", names.len(), names.join(", ")),
    )
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
    fn a_service_holds_its_families_in_order() {
        let svc = |policy: &str, families: &[&str], ips: &[&str]| -> Service {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "require"},
                "spec": {"ipFamilyPolicy": policy, "ipFamilies": families, "clusterIPs": ips},
            }))
            .unwrap()
        };
        let (v4, v6) = (IpFamily::Ipv4, IpFamily::Ipv6);
        let dual = svc(
            "RequireDualStack",
            &["IPv4", "IPv6"],
            &["10.96.0.9", "fd00:10:96::9"],
        );
        assert!(service_ip_families("require", vec![v4, v6])(&[&dual]).done);
        // The right families in the other order are not the allocation asked for.
        assert!(!service_ip_families("require", vec![v6, v4])(&[&dual]).done);
        let single = svc("SingleStack", &["IPv4"], &["10.96.0.9"]);
        assert_eq!(
            service_ip_families("require", vec![v4, v6])(&[&single]),
            Progress::new(
                false,
                "ipFamilyPolicy SingleStack, ipFamilies [IPv4], clusterIPs [10.96.0.9]; want ipFamilies and clusterIPs of [IPv4, IPv6]"
            )
        );
        assert!(service_ip_families("require", vec![v4])(&[&single]).done);
        // ipFamilies that do not match the addresses allocated.
        let odd = svc(
            "RequireDualStack",
            &["IPv4", "IPv6"],
            &["10.96.0.9", "10.96.0.10"],
        );
        assert!(!service_ip_families("require", vec![v4, v6])(&[&odd]).done);
        let headless = svc("RequireDualStack", &["IPv6", "IPv4"], &["None"]);
        assert!(service_ip_families("require", vec![v6, v4])(&[&headless]).done);
        assert!(!service_ip_families("require", vec![v6])(&[&headless]).done);
    }

    #[test]
    fn ip_addresses_name_the_service_as_parent() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"clusterIPs": ["203.0.113.187", "2001:db8:5ec::3"]},
        }))
        .unwrap();
        let addr = |name: &str, ns: &str, parent: &str| -> IPAddress {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"parentRef": {"group": "", "resource": "services", "namespace": ns, "name": parent}},
            }))
            .unwrap()
        };
        let v4 = addr("203.0.113.187", "ns", "web");
        let v6 = addr("2001:db8:5ec::3", "ns", "web");
        assert!(service_ip_addresses("ns", "web")(&[&svc], &[&v4, &v6]).done);
        assert_eq!(
            service_ip_addresses("ns", "web")(&[&svc], &[&v4]),
            Progress::new(
                false,
                "ClusterIPs [203.0.113.187, 2001:db8:5ec::3]; no IPAddress 2001:db8:5ec::3"
            )
        );
        let other = addr("2001:db8:5ec::3", "other", "web");
        let stray = addr("10.96.0.7", "ns", "web");
        assert_eq!(
            service_ip_addresses("ns", "web")(&[&svc], &[&v4, &other, &stray]).status,
            "ClusterIPs [203.0.113.187, 2001:db8:5ec::3]; IPAddress 2001:db8:5ec::3 names parent \
             services/other/web; IPAddress 10.96.0.7 names it but is not one of its ClusterIPs"
        );
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"}, "spec": {"clusterIPs": ["None"]},
        }))
        .unwrap();
        assert!(!service_ip_addresses("ns", "web")(&[&headless], &[&v4]).done);
    }

    #[test]
    fn no_endpoints_is_what_a_wrong_selector_waits_for() {
        let s = slice(serde_json::json!([]), &[]);
        assert!(endpoint_slices_ready(0, &[8080])(&[&s]).done);
        assert!(endpoint_slices_ready(0, &[])(&[]).done);
    }

    fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "deletionTimestamp": terminating.then_some("2026-01-01T00:00:00Z"),
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        }))
        .unwrap()
    }

    fn set(ips: &[&str]) -> BTreeSet<String> {
        ips.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ready_pods_are_ready_not_terminating_and_addressed() {
        let pods = [
            pod("a", "10.244.1.2", true, false),
            pod("b", "10.244.1.3", false, false),
            pod("c", "10.244.2.2", true, true),
            pod("d", "", true, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(ready_pod_ips(&refs, IpFamily::Ipv4), set(&["10.244.1.2"]));
    }

    #[test]
    fn addresses_must_equal_the_ready_pods_not_just_count_as_many() {
        let pods = set(&["10.0.0.1", "10.0.0.2"]);
        assert!(addresses_match_ready_pods(&pods, &set(&["10.0.0.3"]), &pods, 2).done);
        // Right count, wrong member: the unready pod listed instead of a ready one.
        let p = addresses_match_ready_pods(&set(&["10.0.0.1", "10.0.0.3"]), &set(&[]), &pods, 2);
        assert_eq!(
            p,
            Progress::new(
                false,
                "ready addresses [10.0.0.1, 10.0.0.3], Ready pod IPs [10.0.0.1, 10.0.0.2] (want 2); \
                 listed but not a Ready pod: [10.0.0.3]; Ready but not listed: [10.0.0.2]"
            )
        );
        // Equal sets, but not yet the stage the caller waits for.
        assert!(!addresses_match_ready_pods(&pods, &set(&[]), &pods, 3).done);
        assert!(addresses_match_ready_pods(&set(&[]), &set(&[]), &set(&[]), 0).done);
    }

    #[test]
    fn legacy_endpoints_list_only_ready_pods() {
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "subsets": [{
                "addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}],
                "notReadyAddresses": [{"ip": "10.244.1.3"}],
                "ports": [{"name": "http", "port": 8080}],
            }],
        }))
        .unwrap();
        let pods = [
            pod("a", "10.244.1.2", true, false),
            pod("b", "10.244.1.3", false, false),
            pod("c", "10.244.2.2", true, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = endpoints_match_ready_pods("web", 2, IpFamily::Ipv4)(&[&endpoints], &refs);
        assert!(p.done, "{p:?}");
        assert!(
            p.status.contains("not-ready addresses [10.244.1.3]"),
            "{p:?}"
        );
        // publishNotReadyAddresses: the unready pod is listed as ready.
        let mut published = endpoints.clone();
        published.subsets.as_mut().unwrap()[0]
            .addresses
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(serde_json::json!({"ip": "10.244.1.3"})).unwrap());
        let p = endpoints_match_ready_pods("web", 2, IpFamily::Ipv4)(&[&published], &refs);
        assert!(!p.done);
        assert!(
            p.status
                .contains("listed but not a Ready pod: [10.244.1.3]"),
            "{p:?}"
        );
        assert!(!endpoints_match_ready_pods("web", 0, IpFamily::Ipv4)(&[], &[]).done);
    }

    #[test]
    fn slice_addresses_are_compared_with_the_ready_pods() {
        let s = slice(
            serde_json::json!([
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.1.3"], "conditions": {"ready": false}},
            ]),
            &[8080],
        );
        let pods = [
            pod("a", "10.244.1.2", true, false),
            pod("b", "10.244.1.3", false, false),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let p = endpoint_slices_match_ready_pods(1, vec![IpFamily::Ipv4])(&[&s], &refs);
        assert!(p.done, "{p:?}");
        assert!(
            p.status
                .ends_with("not-ready addresses [10.244.1.3] in 1 slices"),
            "{p:?}"
        );
        let other = [pod("x", "10.244.9.9", true, false)];
        let refs: Vec<&Pod> = other.iter().collect();
        assert!(!endpoint_slices_match_ready_pods(1, vec![IpFamily::Ipv4])(&[&s], &refs).done);
    }

    #[test]
    fn dual_stack_slices_list_the_same_pods_in_each_family() {
        let dual = |name: &str, v4: &str, v6: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {
                    "phase": "Running",
                    "podIP": v4,
                    "podIPs": [{"ip": v4}, {"ip": v6}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }))
            .unwrap()
        };
        let pods = [
            dual("a", "10.244.1.2", "fd00:10:244:1::2"),
            dual("b", "10.244.2.2", "fd00:10:244:2::2"),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let v4 = slice(
            serde_json::json!([
                {"addresses": ["10.244.1.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.2.2"], "conditions": {"ready": true}},
            ]),
            &[8080],
        );
        let v6 = slice(
            serde_json::json!([
                {"addresses": ["fd00:10:244:1::2"], "conditions": {"ready": true}},
                {"addresses": ["fd00:10:244:2::2"], "conditions": {"ready": true}},
            ]),
            &[8080],
        );
        let both = vec![IpFamily::Ipv4, IpFamily::Ipv6];
        let p = endpoint_slices_match_ready_pods(2, both.clone())(&[&v4, &v6], &refs);
        assert!(p.done, "{p:?}");
        assert!(p.status.starts_with("ipv4: ready addresses"), "{p:?}");
        // Only the primary family's slice left (a downgrade to SingleStack).
        let p = endpoint_slices_match_ready_pods(2, both)(&[&v4], &refs);
        assert!(!p.done);
        assert!(
            p.status
                .contains("ipv6: ready addresses [], Ready pod IPs [fd00:10:244:1::2, fd00:10:244:2::2] (want 2); Ready but not listed"),
            "{p:?}"
        );
        let p = endpoint_slices_match_ready_pods(2, vec![IpFamily::Ipv6])(&[&v4, &v6], &refs);
        assert!(
            p.done && p.status.starts_with("ready addresses [fd00"),
            "{p:?}"
        );
    }

    #[test]
    fn external_name_has_no_cluster_ip_and_no_endpoints() {
        let external: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "alias"},
            "spec": {"type": "ExternalName", "externalName": "example.org"},
        }))
        .unwrap();
        assert!(service_without_cluster_ip("alias")(&[&external]).done);
        let cluster_ip: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "alias"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"]},
        }))
        .unwrap();
        assert_eq!(
            service_without_cluster_ip("alias")(&[&cluster_ip]),
            Progress::new(false, "type ClusterIP, clusterIP 10.96.0.7 (want none)")
        );
        assert!(!service_without_cluster_ip("alias")(&[]).done);

        assert!(no_endpoints(&[], &[]).done);
        let s = slice(serde_json::json!([]), &[]);
        let p = no_endpoints(&[&s], &[]);
        assert_eq!(p, Progress::new(false, "found EndpointSlice web-abc"));
    }
}

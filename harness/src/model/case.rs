//! A case is data: the fixtures it needs, what must be ready before traffic
//! flows, the checks (traffic from a placement + what is expected), and the
//! sabotage that must make it fail.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Assertion, ErrorKind, IpFamily, Outcome, ProxyMode, ReportKind, Variant};

/// Per-request timeout of the probe: long enough for a loaded 2-core node,
/// short enough that a blackholed request costs little.
pub const REQUEST_TIMEOUT_MS: u32 = 2000;

/// One case, as declared in `suites/cases/<suite>/<name>.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    /// Unique across the catalog: the JUnit name and the filter target.
    pub name: String,
    /// The suite it belongs to (`routing`, `dns`, ...).
    pub suite: String,
    #[serde(default)]
    pub description: String,
    /// Fixture files, relative to `fixtures/`, applied in order into the
    /// case's namespace.
    pub fixtures: Vec<String>,
    /// What must hold before any traffic is sent.
    #[serde(default)]
    pub ready: Vec<Readiness>,
    /// Checks before any step; may be empty when the steps have checks
    /// (the behaviour needs a step first, e.g. an address put on a node).
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Changes made after `checks` passed, each followed by its own checks
    /// (a pod made unready, a scale change). Run in order; each step's
    /// checks must pass before the next step starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
    /// The declared mutation that must turn this case into a failure.
    pub sabotage: Sabotage,
    /// Cluster-wide parts the case needs, installed once per cluster by the
    /// first case that needs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Addon>,
    /// A MetalLB IPAddressPool of the case's own, named like the case's
    /// namespace (`metallb.io/address-pool: ${namespace}`), with this many
    /// addresses, only for the case's Services; deleted when the case ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_pool: Option<AddressPool>,
    /// The case changes what every case of the cluster shares (kube-proxy's
    /// mode): both its runs wait for the others and run alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// The Pod Security level enforced on the case's namespace: probe pods
    /// run `restricted`; an application's public images (WordPress, MySQL)
    /// start as root and need `baseline`.
    #[serde(default)]
    pub pod_security: PodSecurity,
    /// The case is about dual-stack Services themselves: it runs on a
    /// cluster with both families (once per family, as every case) and is
    /// skipped, saying so, on a single-family one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dual_stack: bool,
    /// What the case is about arrived in a release (behind a feature gate
    /// before it): an older API server refuses one of its objects, and
    /// there the run asserts that refusal instead of the checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_before: Option<RefusedBefore>,
    /// The release that brought what the case is about (`v1.36`): on an
    /// older API server it is skipped, saying so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// An object of the case's fixtures that the API refuses before `version`
/// unless `featureGate` is turned on (a Service name starting with a
/// digit before v1.36: RelaxedServiceNameValidation, KEP-5311).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefusedBefore {
    /// The first release whose API server accepts it by default (`v1.36`).
    pub version: String,
    /// The gate that turns it on (in kube-apiserver's `--feature-gates`).
    pub feature_gate: String,
    pub kind: String,
    pub name: String,
    /// The sabotage of a refusal run: a JSON merge patch on the object that
    /// every release accepts, so "refused" must fail.
    pub sabotage: RefusalSabotage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefusalSabotage {
    pub description: String,
    pub merge: serde_json::Value,
}

impl RefusedBefore {
    /// Whether an API server of `server_version` (its gitVersion) with
    /// these `--feature-gates` refuses the object: the gate as set, else
    /// its default (on from `version`). An unreadable version is taken as
    /// new: the case then runs its checks, and says what failed.
    pub fn refused_by(&self, server_version: &str, gates: &BTreeMap<String, bool>) -> bool {
        if let Some(on) = gates.get(&self.feature_gate) {
            return !on;
        }
        !released_by(server_version, &self.version)
    }
}

/// Whether an API server of `server_version` (its gitVersion) is `since`
/// (`v1.36`) or later; an unreadable version is taken as new, so what
/// depends on it runs and says what failed.
fn released_by(server_version: &str, since: &str) -> bool {
    match (minor_version(server_version), minor_version(since)) {
        (Some(server), Some(since)) => server >= since,
        _ => true,
    }
}

/// Why something that came in `since` is not run on an API server of
/// `server_version`; `None` when it is that release or later.
pub fn before_release(server_version: &str, since: Option<&str>) -> Option<String> {
    let since = since?;
    (!released_by(server_version, since)).then(|| {
        format!(
            "it is about what Kubernetes has since {since} and the API server is {server_version}"
        )
    })
}

/// `(major, minor)` of `v1.35.4`, `1.35`, `v1.36.0-rc.1`, `v1.35.4-gke.100`.
fn minor_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PodSecurity {
    #[default]
    Restricted,
    Baseline,
}

impl PodSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Restricted => "restricted",
            PodSecurity::Baseline => "baseline",
        }
    }
}

/// A cluster-wide part some cases need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Addon {
    /// MetalLB (L2), with a pool from the kind network or the user's range.
    Metallb,
}

impl std::fmt::Display for Addon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addon::Metallb => f.write_str("MetalLB"),
        }
    }
}

/// A case's own address pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddressPool {
    pub addresses: u8,
}

/// One change to the case's objects, what must follow from it within a
/// deadline, and the checks that must then pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// Done in order.
    pub actions: Vec<Action>,
    /// What must hold after the actions, within `withinSeconds`. Unlike a
    /// case's `ready`, a step's settle is an expectation: missing the
    /// deadline fails the case (it does not error it).
    #[serde(default)]
    pub settle: Vec<Readiness>,
    #[serde(default = "default_within")]
    pub within_seconds: u64,
    #[serde(default)]
    pub checks: Vec<Check>,
}

fn default_within() -> u64 {
    30
}

/// Something a step does to the case's objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Action {
    /// A JSON merge patch (`spec.replicas` for a scale change).
    Patch(ObjectPatch),
    /// An HTTP GET sent from a client pod to one ready pod matching `pods`
    /// (the first by name), e.g. `/fail-readiness` on a probe backend.
    HttpGet {
        pods: String,
        port: u16,
        path: String,
    },
    /// Puts `address` (a template, e.g. `${spareIP:1}`) on the kind node
    /// `node` (`0`, `with=<selector>`, `without=<selector>`) as
    /// `ip addr add <address>/32 dev eth0` does; removed when the case ends,
    /// whatever its outcome.
    NodeAddress { node: String, address: String },
    /// Server-side applies one object (rendered first, so it may use
    /// placeholders such as `${containerIP:server}`).
    Apply(serde_json::Value),
    /// Starts `image args...` as a docker container on the `kind` network,
    /// next to the cluster (a server outside it), with hostname `name`;
    /// removed when the case ends. `${containerIP:<name>}` is its address.
    Container {
        name: String,
        image: String,
        #[serde(default)]
        args: Vec<String>,
    },
    /// Switches kube-proxy's mode as an operator does: `mode:` edited in
    /// kube-system's `kube-proxy` ConfigMap, then (unless `restart: false`)
    /// `kubectl rollout restart daemonset kube-proxy`. When the case ends the
    /// ConfigMap is put back and kube-proxy restarted if it runs otherwise.
    ProxyMode {
        to: ModeSwitch,
        #[serde(default = "yes")]
        restart: bool,
    },
    /// Adds a second Service range (a ServiceCIDR, GA in v1.33): a /29 of
    /// the documentation ranges no other run holds, labelled with the case
    /// namespace, waited for until Ready; `${serviceCIDRIP:<n>}` is its n-th
    /// address. Deleted when the case ends.
    #[serde(rename = "serviceCIDR")]
    ServiceCidr {},
    /// Puts the taint `key` (`value`, `effect`) on the node `node` (a node
    /// pick, as `nodeAddress`'s); taken off when the case ends. A taint the
    /// node had already is left as it was, and left there.
    Taint {
        node: String,
        key: String,
        #[serde(default)]
        value: String,
        effect: String,
    },
    /// Takes the taint `key` off the node `node` (a sabotage undoing a
    /// step's taint).
    Untaint { node: String, key: String },
    /// Sets one of kube-proxy's feature gates (`featureGates:` in its
    /// ConfigMap's config.conf), restarts it and waits for the rollout; the
    /// configuration is put back and kube-proxy restarted when the case ends.
    ProxyFeatureGate { name: String, enabled: bool },
}

fn yes() -> bool {
    true
}

/// Which mode a switch goes to, relative to the mode the cluster runs when
/// the case starts: the other of iptables and nftables, or back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ModeSwitch {
    Other,
    Original,
}

impl ModeSwitch {
    /// The concrete mode on a cluster that started in `cluster`.
    pub fn resolve(self, cluster: ProxyMode) -> Result<ProxyMode, String> {
        match (self, cluster) {
            (ModeSwitch::Original, mode) => Ok(mode),
            (ModeSwitch::Other, ProxyMode::Iptables) => Ok(ProxyMode::Nftables),
            (ModeSwitch::Other, ProxyMode::Nftables) => Ok(ProxyMode::Iptables),
            (ModeSwitch::Other, mode @ (ProxyMode::Ipvs | ProxyMode::Other)) => Err(format!(
                "the mode switch goes between iptables and nftables; this cluster runs {mode}"
            )),
        }
    }
}

/// Something to wait for, each with the harness's deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Readiness {
    /// The Deployment of this name has all its replicas available.
    Deployment(String),
    /// The DaemonSet of this name has a ready pod on every node it targets.
    DaemonSet(String),
    /// The Service's EndpointSlices hold exactly `ready` ready endpoints, and
    /// (when given) exactly these target ports.
    EndpointSlices {
        service: String,
        ready: Count,
        #[serde(default)]
        ports: Vec<u16>,
    },
    /// The Service's legacy core/v1 Endpoints object lists as `addresses`
    /// exactly the IPs of the Ready pods its selector matches, and there are
    /// `ready` of them (an unready pod is only in `notReadyAddresses`, or
    /// gone).
    Endpoints { service: String, ready: usize },
    /// The ready endpoint addresses of the Service's EndpointSlices are
    /// exactly the IPs of the Ready pods its selector matches, and there are
    /// `ready` of them (where `endpointSlices` only counts): in the run's
    /// family, or in each of `families` (a dual-stack Service has slices of
    /// both, listing the same pods).
    EndpointSliceAddresses {
        service: String,
        ready: Count,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        families: Vec<FamilyRank>,
    },
    /// The Service of this name has no ClusterIP allocated: `spec.clusterIP`
    /// and `spec.clusterIPs` absent or empty (an ExternalName Service).
    NoClusterIp(String),
    /// The Service of this name has no EndpointSlice and no Endpoints object.
    NoEndpoints(String),
    /// The LoadBalancer Service of this name has an ingress address in its
    /// status (an EXTERNAL-IP).
    LoadBalancer(String),
    /// The LoadBalancer Service `service` has no ingress address once the
    /// `witness` Service (same namespace, served by the cluster's
    /// implementation) got one, and keeps none for a few seconds more.
    LoadBalancerPending { service: String, witness: String },
    /// No pod matching `selector` is left in `namespace` (terminating ones
    /// count as left).
    PodsGone { namespace: String, selector: String },
    /// Every node's kube-proxy runs `mode` (its log's `Using <mode>
    /// Proxier`) and, where the nodes can be read (kind), that mode's rules
    /// hold the case's Services while the other mode programs none.
    ProxyMode { mode: ModeSwitch },
    /// The Service's `spec.ipFamilies` and its ClusterIPs are exactly these
    /// families in this order, named by rank: `primary` is the cluster's
    /// first Service family (that of `default/kubernetes`), `secondary` the
    /// other. A dual-stack allocation: `[primary, secondary]`. A headless
    /// Service has no ClusterIP: its `ipFamilies` alone.
    #[serde(rename = "clusterIPFamilies")]
    ClusterIpFamilies {
        service: String,
        families: Vec<FamilyRank>,
    },
    /// Each ClusterIP of the Service has its IPAddress object
    /// (networking.k8s.io/v1, named by the address; GA in v1.33) naming this
    /// Service as its parent, and no other IPAddress names it: the
    /// allocator's record of which Service holds which address.
    IpAddresses(String),
    /// Exactly `ready` pods matching `selector` are Ready (one was made
    /// unready by a step).
    ReadyPods { selector: String, ready: usize },
    /// The Service's EndpointSlices hold no ready endpoint and exactly
    /// `terminating` terminating ones (a pod in its preStop delay; whether
    /// they still serve is the checks' business).
    TerminatingEndpoints { service: String, terminating: usize },
}

impl Readiness {
    /// What is waited for, in a few words (progress lines, heartbeats).
    pub fn describe(&self) -> String {
        match self {
            Readiness::Deployment(name) => format!("Deployment {name} available"),
            Readiness::DaemonSet(name) => format!("DaemonSet {name} ready"),
            Readiness::EndpointSlices { service, ready, .. } => {
                format!("{ready} ready endpoints of Service {service}")
            }
            Readiness::Endpoints { service, ready } => {
                format!("Endpoints of Service {service} listing {ready} Ready pods")
            }
            Readiness::EndpointSliceAddresses {
                service,
                ready,
                families,
            } if families.is_empty() => {
                format!("EndpointSlices of Service {service} listing {ready} Ready pods")
            }
            Readiness::EndpointSliceAddresses {
                service,
                ready,
                families,
            } => format!(
                "EndpointSlices of Service {service} listing {ready} Ready pods in the {} families",
                FamilyRank::names(families)
            ),
            Readiness::NoClusterIp(name) => format!("Service {name} without a ClusterIP"),
            Readiness::NoEndpoints(name) => format!("Service {name} without endpoints"),
            Readiness::LoadBalancer(name) => format!("an EXTERNAL-IP for Service {name}"),
            Readiness::LoadBalancerPending { service, witness } => {
                format!("Service {service} still Pending once {witness} got an EXTERNAL-IP")
            }
            Readiness::PodsGone {
                namespace,
                selector,
            } => {
                format!("pods {selector} gone from {namespace}")
            }
            Readiness::ClusterIpFamilies { service, families } => format!(
                "Service {service} with ClusterIPs of the {} families",
                FamilyRank::names(families)
            ),
            Readiness::IpAddresses(service) => {
                format!("IPAddress objects of Service {service}'s ClusterIPs")
            }
            Readiness::ReadyPods { selector, ready } => format!("{ready} Ready pods {selector}"),
            Readiness::ProxyMode { mode } => format!("kube-proxy switched ({mode:?} mode)"),
            Readiness::TerminatingEndpoints {
                service,
                terminating,
            } => {
                format!("{terminating} terminating endpoints of Service {service}")
            }
        }
    }
}

/// kube-controller-manager's `--max-endpoints-per-slice` when the flag is
/// not set (or its pod cannot be read).
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: u32 = 100;

/// A count that follows a cluster's EndpointSlice size limit: `120%` (of
/// the limit, rounded up) or `120%+1` (one more: a stale slice's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SliceShare {
    pub percent: u32,
    pub plus: u32,
}

impl SliceShare {
    /// `120%` or `120%+1`; `None` for anything else.
    pub fn parse(text: &str) -> Option<SliceShare> {
        let (percent, plus) = text.split_once('+').unwrap_or((text, "0"));
        Some(SliceShare {
            percent: percent.strip_suffix('%')?.parse().ok()?,
            plus: plus.parse().ok()?,
        })
    }

    /// The number on a cluster whose EndpointSlices hold at most `max`
    /// endpoints.
    pub fn of(self, max: u32) -> u32 {
        (max * self.percent).div_ceil(100) + self.plus
    }
}

impl std::fmt::Display for SliceShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.plus {
            0 => write!(f, "{}%", self.percent),
            plus => write!(f, "{}%+{plus}", self.percent),
        }
    }
}

/// A number of ready endpoints: as written (`ready: 3`), a share of the
/// cluster's EndpointSlice size limit (`ready: "${maxEndpointsPerSlice:120%}"`),
/// so a case about sharding needs only a few pods more than one slice holds,
/// or the cluster's node count (`ready: "${nodes}"`): the client pods, one
/// per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CountText", into = "CountText")]
pub enum Count {
    Fixed(usize),
    SliceShare(SliceShare),
    Nodes,
}

/// What a [`Count`] written relative to the cluster is counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSize {
    /// kube-controller-manager's `--max-endpoints-per-slice`.
    pub max_endpoints_per_slice: u32,
    /// Every node, schedulable or not (the client DaemonSet tolerates any
    /// taint).
    pub nodes: usize,
}

impl ClusterSize {
    /// Before the cluster was read: the controller's default limit, one node.
    pub const UNREAD: ClusterSize = ClusterSize {
        max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE,
        nodes: 1,
    };
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CountText {
    Number(usize),
    Text(String),
}

impl TryFrom<CountText> for Count {
    type Error = String;
    fn try_from(raw: CountText) -> Result<Count, String> {
        match raw {
            CountText::Number(n) => Ok(Count::Fixed(n)),
            CountText::Text(t) if t == "${nodes}" => Ok(Count::Nodes),
            CountText::Text(t) => t
                .strip_prefix("${maxEndpointsPerSlice:")
                .and_then(|rest| rest.strip_suffix('}'))
                .and_then(SliceShare::parse)
                .map(Count::SliceShare)
                .ok_or_else(|| {
                    format!("{t:?} is not a count: a number, \"${{nodes}}\" or \"${{maxEndpointsPerSlice:<percent>%[+<n>]}}\"")
                }),
        }
    }
}

impl From<Count> for CountText {
    fn from(count: Count) -> CountText {
        match count {
            Count::Fixed(n) => CountText::Number(n),
            Count::SliceShare(share) => {
                CountText::Text(format!("${{maxEndpointsPerSlice:{share}}}"))
            }
            Count::Nodes => CountText::Text("${nodes}".into()),
        }
    }
}

impl Count {
    /// The number on a cluster of this size.
    pub fn on(self, size: ClusterSize) -> usize {
        match self {
            Count::Fixed(n) => n,
            Count::SliceShare(share) => share.of(size.max_endpoints_per_slice) as usize,
            Count::Nodes => size.nodes,
        }
    }

    /// The number when it does not depend on the cluster.
    pub fn fixed(self) -> Option<usize> {
        match self {
            Count::Fixed(n) => Some(n),
            Count::SliceShare(_) | Count::Nodes => None,
        }
    }
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count::Fixed(n) => write!(f, "{n}"),
            Count::SliceShare(share) => write!(f, "{share} of maxEndpointsPerSlice"),
            Count::Nodes => f.write_str("${nodes} (one per node)"),
        }
    }
}

/// A family named by its rank in a dual-stack cluster (see
/// [`Readiness::ClusterIpFamilies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FamilyRank {
    Primary,
    Secondary,
}

impl FamilyRank {
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyRank::Primary => "primary",
            FamilyRank::Secondary => "secondary",
        }
    }

    /// `primary and secondary`.
    pub fn names(ranks: &[FamilyRank]) -> String {
        ranks
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    }

    /// The family of this rank on a cluster whose primary is `primary`.
    pub fn of(self, primary: super::IpFamily) -> super::IpFamily {
        match self {
            FamilyRank::Primary => primary,
            FamilyRank::Secondary => primary.other(),
        }
    }
}

/// Traffic from one place, and what must be observed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Check {
    pub name: String,
    pub from: ClientPlacement,
    pub probe: Probe,
    pub expect: Vec<Assertion>,
    /// Replaces `expect` in the modes where kube-proxy legitimately differs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expect_by_mode: BTreeMap<ProxyMode, Vec<Assertion>>,
    /// The release that brought what it checks (an API warning added in
    /// `v1.36`): not run on an older API server, the evidence says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl Check {
    /// Whether its probe can run from its placement, and each assertion
    /// (in every mode) judges what the probe reports.
    pub fn fits(&self) -> Result<(), String> {
        if let Some(why) = self.from.cannot_run(&self.probe) {
            return Err(format!(
                "a {} probe cannot run from `{}`: {why}",
                self.probe.name(),
                self.from.name()
            ));
        }
        let assertions = self
            .expect
            .iter()
            .chain(self.expect_by_mode.values().flatten());
        for assertion in assertions {
            if assertion.judges() != self.probe.reports() {
                return Err(format!(
                    "assertion `{}` judges {} reports; its {} probe gives {} reports",
                    assertion.name(),
                    assertion.judges(),
                    self.probe.name(),
                    self.probe.reports()
                ));
            }
        }
        Ok(())
    }

    /// The assertions that apply in `mode`.
    pub fn expectations(&self, mode: ProxyMode) -> &[Assertion] {
        self.expect_by_mode.get(&mode).unwrap_or(&self.expect)
    }

    /// Milliseconds a passing run of the check waits by design: the pauses
    /// between its requests, and every request that is meant to time out.
    pub fn designed_wait_ms(&self) -> u64 {
        let (requests, interval) = match &self.probe {
            Probe::Http {
                count, interval_ms, ..
            }
            | Probe::Udp {
                count, interval_ms, ..
            } => (*count, *interval_ms),
            Probe::Tcp { .. } | Probe::Dns { .. } | Probe::ApiWarnings(_) => (1, 0),
        };
        let times_out = self.expect.iter().any(|a| {
            matches!(
                a,
                Assertion::AllFailWith(ErrorKind::Timeout) | Assertion::TcpResult(Outcome::Timeout)
            )
        });
        let timeouts = if times_out {
            super::request_timeout_ms()
        } else {
            0
        };
        u64::from(requests) * u64::from(interval + timeouts)
    }
}

/// Where the client runs. Client pods come from a DaemonSet in the case's
/// namespace, so "same node" and "other node" are explicit choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientPlacement {
    /// A client pod on a node that runs no pod matching this label selector.
    OtherNodeThan(String),
    /// A client pod on a node that runs a pod matching this label selector.
    SameNodeAs(String),
    /// A client pod on a node whose zone (`topology.kubernetes.io/zone`)
    /// has no pod matching this label selector: what a zone-preferring
    /// Service must fall back from.
    OtherZoneThan(String),
    /// Any client pod.
    AnyNode,
    /// The first Ready pod matching this label selector (by name) is itself
    /// the client: a backend reaching its own Service (hairpin). Its image
    /// must be the probe's.
    Pod(String),
    /// The harness process, outside the cluster (on kind: the host, over
    /// the docker bridge). HTTP and TCP only.
    External,
    /// A fresh probe container on the kind docker network, outside the
    /// cluster: a client that has never resolved the target's address (the
    /// host may still hold an ARP entry that keeps a dead announcement
    /// working). kind only; HTTP and TCP.
    ExternalContainer,
    /// The harness itself as an API client, for an `apiWarnings` probe:
    /// nothing goes over the data plane.
    ApiServer,
}

impl ClientPlacement {
    /// Its name in a case file (`anyNode`, `external`, ...).
    pub fn name(&self) -> String {
        super::expectation::serde_name(self)
    }

    /// Why `probe` cannot run from here, if it cannot: a DNS query goes
    /// through a pod's resolver, so not from outside the cluster; an API
    /// server's warnings are asked for by the harness, and only that is.
    pub fn cannot_run(&self, probe: &Probe) -> Option<&'static str> {
        let outside = matches!(
            self,
            ClientPlacement::External | ClientPlacement::ExternalContainer
        );
        let api = matches!(probe, Probe::ApiWarnings(_));
        if outside && matches!(probe, Probe::Dns { .. }) {
            Some("DNS goes through a client pod's resolver")
        } else if api != (*self == ClientPlacement::ApiServer) {
            Some("the API server's warnings are asked for by the harness (`from: apiServer`), and that is all it asks from there")
        } else {
            None
        }
    }
}

/// The traffic: one probe role, run inside a client pod. Targets may use
/// `${namespace}` and `${clusterIP:<service>}`, resolved at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Probe {
    /// `count` HTTP GETs without keep-alive against `http://<target><path>`.
    Http {
        target: String,
        #[serde(default = "default_count")]
        count: u32,
        #[serde(default = "default_path")]
        path: String,
        /// Pause between requests (affinity timeouts), 0 by default.
        #[serde(default, rename = "intervalMs", skip_serializing_if = "is_zero")]
        interval_ms: u32,
    },
    /// One TCP connection attempt.
    Tcp { target: String },
    /// `count` datagrams from one socket (one source port), each waiting for
    /// the echo's reply: tallied like `http`, so the same assertions judge it.
    Udp {
        target: String,
        #[serde(default = "default_count")]
        count: u32,
        #[serde(default, rename = "intervalMs", skip_serializing_if = "is_zero")]
        interval_ms: u32,
        /// Send from this port (offset per case namespace, so concurrent runs
        /// differ), so a later check of the run from the same client is the
        /// same flow to conntrack (a stale entry would catch it).
        #[serde(
            default,
            rename = "sourcePort",
            skip_serializing_if = "Option::is_none"
        )]
        source_port: Option<u16>,
    },
    /// One query through the pod's resolver.
    Dns {
        name: String,
        #[serde(rename = "type")]
        record_type: String,
        /// Query the name as absolute (no search list).
        #[serde(default, rename = "noSearch")]
        no_search: bool,
    },
    /// A no-op update of one object of the case's namespace (an empty merge
    /// patch, dry run: nothing is written), sent by the harness: the
    /// warnings the API server answers with (a deprecated field value, a
    /// deprecated API). Only `from: apiServer`.
    ApiWarnings(ObjectRef),
}

/// One object of the case's namespace, by API version, kind and name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

fn default_count() -> u32 {
    30
}

fn default_path() -> String {
    "/".to_string()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Probe {
    /// Its name in a case file (`http`, `tcp`, `udp`, `dns`).
    pub fn name(&self) -> String {
        super::expectation::serde_name(self)
    }

    /// What it reports.
    pub fn reports(&self) -> ReportKind {
        match self {
            Probe::Http { .. } | Probe::Udp { .. } => ReportKind::Http,
            Probe::Tcp { .. } => ReportKind::Tcp,
            Probe::Dns { .. } => ReportKind::Dns,
            Probe::ApiWarnings(_) => ReportKind::Warnings,
        }
    }

    /// The probe as it runs in `family`: an address query (`type: A`)
    /// asks for the family's records (AAAA in IPv6); the rest is the same.
    pub fn in_family(&self, family: IpFamily) -> Probe {
        match self {
            Probe::Dns {
                name,
                record_type,
                no_search,
            } if family == IpFamily::Ipv6 && record_type.eq_ignore_ascii_case("A") => Probe::Dns {
                name: name.clone(),
                record_type: "AAAA".into(),
                no_search: *no_search,
            },
            other => other.clone(),
        }
    }
}

impl Probe {
    /// One-line description for logs and evidence.
    pub fn describe(&self) -> String {
        match self {
            Probe::Http {
                target,
                count,
                path,
                interval_ms,
            } => {
                let every = if *interval_ms > 0 {
                    format!(" every {interval_ms}ms")
                } else {
                    String::new()
                };
                format!("http {target}{path} x{count}{every}")
            }
            Probe::Tcp { target } => format!("tcp {target}"),
            Probe::Udp {
                target,
                count,
                source_port,
                ..
            } => {
                let from = source_port
                    .map(|p| format!(" from port {p}"))
                    .unwrap_or_default();
                format!("udp {target} x{count}{from}")
            }
            Probe::Dns {
                name, record_type, ..
            } => format!("dns {name} {record_type}"),
            Probe::ApiWarnings(o) => {
                format!("warnings on a dry-run update of {} {}", o.kind, o.name)
            }
        }
    }
}

/// The mutation applied after the fixture in a sabotaged run: a patch, or
/// actions like a step's (done in order, undone when the case ends).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sabotage {
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<ObjectPatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The step after whose actions (and settle) the sabotage goes in, for
    /// what a step makes; its checks then pass first and must fail after.
    /// Without it the sabotage goes in before the case's checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_step: Option<String>,
    /// The sabotage breaks something every case of the cluster shares
    /// (MetalLB's speaker): its run waits for the others and runs alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// What to wait for once the patch is in, so the probes see its effect
    /// and not kube-proxy's lag.
    #[serde(default)]
    pub settle: Vec<Readiness>,
    /// Another patch in a mode where this one cannot make the case fail
    /// (ipvs: persistence outlives a 2 s affinity timeout within the case,
    /// so a 3-hour one looks the same).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_mode: BTreeMap<ProxyMode, ModeSabotage>,
}

/// A sabotage's description and patch in one mode ([`Sabotage::by_mode`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModeSabotage {
    pub description: String,
    pub patch: ObjectPatch,
}

impl Sabotage {
    /// The description and patch of the sabotage in `mode`.
    pub fn in_mode(&self, mode: ProxyMode) -> (&str, Option<&ObjectPatch>) {
        match self.by_mode.get(&mode) {
            Some(m) => (&m.description, Some(&m.patch)),
            None => (&self.description, self.patch.as_ref()),
        }
    }
}

/// A JSON merge patch on one object of the case's namespace (or, for a
/// sabotage of something shared, of `namespace`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectPatch {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub merge: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Patch the status subresource (what a controller reports), not the spec.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub status: bool,
    /// The merge patch that puts the object back when the case ends; needed
    /// for objects outside the case's namespace, which outlive the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<serde_json::Value>,
}

/// The name (and `app.kubernetes.io/name`) of the harness's client pods'
/// DaemonSet (fixtures/common/clients.yaml).
pub const CLIENT_NAME: &str = "svcconf-client";

/// Whose client pods a case's checks are sent from ([`Case::client_pods`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientPods {
    /// Nothing is sent from a client pod.
    None,
    /// The run's DaemonSet, one for every case of a mode: no client pod
    /// starts per case. The probe resolves names as a pod of the case's
    /// namespace does (`svcconf-probe --namespace`).
    Shared,
    /// A DaemonSet in the case's own namespace.
    Own,
}

/// A case declaration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("case {case:?}: {problem}")]
    Invalid {
        case: String,
        problem: String,
        /// The check it is about, to find its line.
        check: Option<String>,
    },
    #[error("case name {name:?} is declared twice ({first} and {second})")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
}

impl Case {
    /// Why this case does not run on a cluster of `families` (the run's):
    /// a dual-stack case needs both.
    pub fn single_stack_reason(&self, families: &[super::IpFamily]) -> Option<String> {
        (self.dual_stack && families.len() < 2).then(|| {
            format!(
                "it is about dual-stack Services and this cluster runs {} alone: it runs on a dual-stack cluster (--ip-family dual)",
                families.first().map_or("one family", |f| f.as_str())
            )
        })
    }

    /// Its own checks, then each step's.
    fn all_checks(&self) -> impl Iterator<Item = &Check> + Clone {
        self.checks
            .iter()
            .chain(self.steps.iter().flat_map(|s| s.checks.iter()))
    }

    /// A rough guess of the seconds a plain run spends in its checks and
    /// steps: a second per check, two per step (its actions and settle),
    /// plus what the checks wait by design. Only an order key: the runner
    /// starts long cases first, so they do not become the run's tail.
    pub fn expected_seconds(&self) -> f64 {
        let checks = self.all_checks();
        let waits: u64 = checks.clone().map(Check::designed_wait_ms).sum();
        checks.count() as f64 + 2.0 * self.steps.len() as f64 + waits as f64 / 1000.0
    }

    /// Whether this run of the case waits for every other and runs alone:
    /// the case changes what all cases share, or its sabotage breaks it.
    pub fn runs_alone(&self, variant: Variant) -> bool {
        self.exclusive || (variant == Variant::Sabotaged && self.sabotage.exclusive)
    }

    /// Whether a step or the sabotage reconfigures kube-proxy (its mode,
    /// a feature gate): a change to the whole cluster, not the case's
    /// namespace.
    pub fn reconfigures_kube_proxy(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.actions)
            .chain(&self.sabotage.actions)
            .any(|a| {
                matches!(
                    a,
                    Action::ProxyMode { .. } | Action::ProxyFeatureGate { .. }
                )
            })
    }

    /// Whether the case sends traffic from client pods (checks placed by
    /// node, or a step's GET): only then does it get the client DaemonSet, three pods
    /// fewer to start for a case that probes only from outside.
    pub fn needs_client_pods(&self) -> bool {
        let checks = self.all_checks();
        let in_pod = |c: &Check| {
            matches!(
                c.from,
                ClientPlacement::OtherNodeThan(_)
                    | ClientPlacement::SameNodeAs(_)
                    | ClientPlacement::OtherZoneThan(_)
                    | ClientPlacement::AnyNode
            )
        };
        let actions = self
            .steps
            .iter()
            .flat_map(|s| s.actions.iter())
            .chain(self.sabotage.actions.iter());
        checks.into_iter().any(in_pod)
            || actions
                .into_iter()
                .any(|a| matches!(a, Action::HttpGet { .. }))
    }

    /// Whose client pods the case sends from: none when nothing does; its
    /// own when its declaration names them (a Service re-pointed at them, a
    /// wait on their DaemonSet), so a sabotage meets them in its namespace;
    /// otherwise the run's, shared by the cases of a mode.
    pub fn client_pods(&self) -> ClientPods {
        if !self.needs_client_pods() {
            return ClientPods::None;
        }
        let declared =
            serde_json::to_string(&(&self.ready, &self.sabotage, &self.steps)).unwrap_or_default();
        match declared.contains(CLIENT_NAME) || self.expects_refusal() {
            true => ClientPods::Own,
            false => ClientPods::Shared,
        }
    }

    /// Whether a check expects connections refused. kube-proxy refuses with
    /// ICMP, which the node's kernel sends at most about once a second per
    /// destination (`net.ipv4.icmp_ratelimit`, a burst of 6): from the
    /// client pods every case shares, the others' refusals (kube-proxy
    /// still programming a new Service) starve it into timeouts.
    fn expects_refusal(&self) -> bool {
        let checks = self.all_checks();
        checks.flat_map(|c| c.expect.iter()).any(|a| {
            matches!(
                a,
                Assertion::AllFailWith(ErrorKind::Refused) | Assertion::TcpResult(Outcome::Refused)
            )
        })
    }

    /// `suite/name`, for people.
    pub fn id(&self) -> String {
        format!("{}/{}", self.suite, self.name)
    }

    /// Checks what the type system cannot: names usable in namespace names,
    /// something to check, unique check names.
    pub fn validate(&self) -> Result<(), CaseError> {
        let invalid = |problem: String| CaseError::Invalid {
            case: self.name.clone(),
            problem,
            check: None,
        };
        // The namespace is `svcconf-<name>-<5 random>`: keep it a DNS label.
        if !is_dns_label(&self.name) || self.name.len() > 40 {
            return Err(invalid(
                "name must be a DNS label of at most 40 characters".into(),
            ));
        }
        if !is_dns_label(&self.suite) {
            return Err(invalid(format!(
                "suite {:?} must be a DNS label",
                self.suite
            )));
        }
        if self.fixtures.is_empty() {
            return Err(invalid("declares no fixtures".into()));
        }
        let mut steps = BTreeSet::new();
        for step in &self.steps {
            if !steps.insert(step.name.as_str()) {
                return Err(invalid(format!("step {:?} is declared twice", step.name)));
            }
            if step.settle.is_empty() && step.checks.is_empty() {
                return Err(invalid(format!(
                    "step {:?} expects nothing (no settle, no checks)",
                    step.name
                )));
            }
        }
        let releases = self
            .refused_before
            .iter()
            .map(|r| ("refusedBefore.version", &r.version))
            .chain(self.since.iter().map(|v| ("since", v)))
            .chain(
                self.all_checks()
                    .filter_map(|c| Some(("a check's since", c.since.as_ref()?))),
            );
        for (field, version) in releases {
            if minor_version(version).is_none() {
                return Err(invalid(format!(
                    "{field} {version:?} is not a release (v1.36)"
                )));
            }
        }
        if let Some(after) = &self.sabotage.after_step {
            match self.steps.iter().find(|s| &s.name == after) {
                None => {
                    return Err(invalid(format!(
                        "its sabotage goes in after step {after:?}, which the case does not declare"
                    )))
                }
                Some(s) if s.checks.is_empty() => {
                    return Err(invalid(format!(
                        "its sabotage goes in after step {after:?}, which has no checks to break"
                    )))
                }
                Some(_) => {}
            }
        }
        // A step's settle is an expectation too (an EXTERNAL-IP within a deadline).
        if self.checks.is_empty()
            && self
                .steps
                .iter()
                .all(|s| s.checks.is_empty() && s.settle.is_empty())
        {
            return Err(invalid("declares no checks".into()));
        }
        if self.sabotage.patch.is_none() && self.sabotage.actions.is_empty() {
            return Err(invalid(
                "the sabotage changes nothing (no patch, no actions)".into(),
            ));
        }
        let outside = self
            .sabotage
            .patch
            .iter()
            .chain(self.sabotage.by_mode.values().map(|m| &m.patch))
            .chain(self.sabotage.actions.iter().filter_map(|a| match a {
                Action::Patch(p) => Some(p),
                _ => None,
            }))
            .find(|p| p.namespace.is_some() && p.restore.is_none());
        if let Some(p) = outside {
            return Err(invalid(format!(
                "the patch of {} {} outside the case's namespace has no restore",
                p.kind, p.name
            )));
        }
        let mut seen = BTreeSet::new();
        let all_checks = self
            .checks
            .iter()
            .chain(self.steps.iter().flat_map(|s| s.checks.iter()));
        for check in all_checks {
            if !seen.insert(check.name.as_str()) {
                return Err(invalid(format!("check {:?} is declared twice", check.name)));
            }
            if check.expect.is_empty() {
                return Err(invalid(format!("check {:?} expects nothing", check.name)));
            }
            if let Some((mode, _)) = check.expect_by_mode.iter().find(|(_, a)| a.is_empty()) {
                return Err(invalid(format!(
                    "check {:?} expects nothing in {mode}",
                    check.name
                )));
            }
            check.fits().map_err(|problem| CaseError::Invalid {
                case: self.name.clone(),
                problem: format!("check {:?}: {problem}", check.name),
                check: Some(check.name.clone()),
            })?;
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Every case svcconf knows, validated and with unique names.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    cases: Vec<Case>,
}

impl Catalog {
    /// Builds a catalog from `(origin, case)` pairs; `origin` names where the
    /// case came from in error messages.
    pub fn new(cases: impl IntoIterator<Item = (String, Case)>) -> Result<Self, CaseError> {
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Vec::new();
        for (origin, case) in cases {
            case.validate()?;
            if let Some(first) = origins.insert(case.name.clone(), origin.clone()) {
                return Err(CaseError::Duplicate {
                    name: case.name,
                    first,
                    second: origin,
                });
            }
            out.push(case);
        }
        out.sort_by(|a, b| (&a.suite, &a.name).cmp(&(&b.suite, &b.name)));
        Ok(Catalog { cases: out })
    }

    pub fn cases(&self) -> &[Case] {
        &self.cases
    }

    pub fn get(&self, name: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_refused_before_its_release_unless_the_gate_says_otherwise() {
        let r = RefusedBefore {
            version: "v1.36".into(),
            feature_gate: "RelaxedServiceNameValidation".into(),
            kind: "Service".into(),
            name: "7web".into(),
            sabotage: RefusalSabotage {
                description: "renamed".into(),
                merge: serde_json::json!({"metadata": {"name": "web7"}}),
            },
        };
        let none = BTreeMap::new();
        assert!(r.refused_by("v1.35.4", &none));
        assert!(r.refused_by("v1.34.4-gke.100", &none));
        assert!(!r.refused_by("v1.36.0-rc.1", &none));
        assert!(!r.refused_by("v1.37.2", &none));
        assert!(!r.refused_by("unknown", &none));
        let on = BTreeMap::from([("RelaxedServiceNameValidation".to_string(), true)]);
        assert!(!r.refused_by("v1.35.4", &on));
        let off = BTreeMap::from([("RelaxedServiceNameValidation".to_string(), false)]);
        assert!(r.refused_by("v1.36.3", &off));
        assert_eq!(minor_version("1.35"), Some((1, 35)));
        assert_eq!(before_release("v1.37.2", Some("v1.36")), None);
        assert_eq!(before_release("v1.35.4", None), None);
        assert_eq!(before_release("unknown", Some("v1.36")), None);
        assert_eq!(
            before_release("v1.35.4", Some("v1.36")).unwrap(),
            "it is about what Kubernetes has since v1.36 and the API server is v1.35.4"
        );
        assert_eq!(minor_version("v1"), None);
    }

    #[test]
    fn a_dual_stack_case_says_why_it_does_not_run_on_one_family() {
        use super::super::IpFamily;
        let mut case: Case = serde_saphyr::from_str(
            "name: c\nsuite: s\nfixtures: []\nsabotage: {description: d}\ndualStack: true\n",
        )
        .unwrap();
        assert_eq!(
            case.single_stack_reason(&[IpFamily::Ipv6]).unwrap(),
            "it is about dual-stack Services and this cluster runs ipv6 alone: it runs on a dual-stack cluster (--ip-family dual)"
        );
        assert_eq!(
            case.single_stack_reason(&[IpFamily::Ipv4, IpFamily::Ipv6]),
            None
        );
        case.dual_stack = false;
        assert_eq!(case.single_stack_reason(&[IpFamily::Ipv4]), None);
    }

    #[test]
    fn address_queries_ask_for_the_family() {
        let a = Probe::Dns {
            name: "web".into(),
            record_type: "A".into(),
            no_search: false,
        };
        let Probe::Dns { record_type, .. } = a.in_family(IpFamily::Ipv6) else {
            panic!()
        };
        assert_eq!(record_type, "AAAA");
        assert_eq!(a.in_family(IpFamily::Ipv4), a);
        let srv = Probe::Dns {
            name: "_http._tcp.web".into(),
            record_type: "SRV".into(),
            no_search: true,
        };
        assert_eq!(srv.in_family(IpFamily::Ipv6), srv);
    }

    const CASE: &str = r#"
name: clusterip-basic
suite: routing
fixtures: [routing/clusterip-basic.yaml]
ready:
  - deployment: web
  - endpointSlices: {service: web, ready: 3, ports: [8080]}
checks:
  - name: via-clusterip
    from: {otherNodeThan: app=web}
    probe: {http: {target: "${clusterIP:web}:80"}}
    expect:
      - allOk
      - backends: {pods: app=web, count: 3}
    expectByMode:
      nftables: [allOk]
sabotage:
  description: selector matches nothing
  patch: {apiVersion: v1, kind: Service, name: web, merge: {spec: {selector: {app: nothing}}}}
  settle: [{endpointSlices: {service: web, ready: 0}}]
"#;

    fn case() -> Case {
        serde_saphyr::from_str(CASE).unwrap()
    }

    #[test]
    fn a_sabotage_may_patch_otherwise_in_one_mode() {
        let mut c = case();
        assert_eq!(
            c.sabotage.in_mode(ProxyMode::Ipvs).0,
            "selector matches nothing"
        );
        c.sabotage = serde_saphyr::from_str(
            "description: selector matches nothing\n\
             patch: {apiVersion: v1, kind: Service, name: web, merge: {spec: {selector: {app: nothing}}}}\n\
             byMode:\n  ipvs:\n    description: port 81\n    \
             patch: {apiVersion: v1, kind: Service, name: web, merge: {spec: {ports: [{port: 81}]}}}\n",
        )
        .unwrap();
        let (description, patch) = c.sabotage.in_mode(ProxyMode::Ipvs);
        assert_eq!(description, "port 81");
        assert_eq!(patch.unwrap().merge["spec"]["ports"][0]["port"], 81);
        let (description, patch) = c.sabotage.in_mode(ProxyMode::Nftables);
        assert_eq!(description, "selector matches nothing");
        assert_eq!(patch.unwrap().merge["spec"]["selector"]["app"], "nothing");
        c.validate().unwrap();
        // A patch outside the case's namespace needs its restore, here too.
        c.sabotage
            .by_mode
            .get_mut(&ProxyMode::Ipvs)
            .unwrap()
            .patch
            .namespace = Some("kube-system".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("has no restore"));
    }

    #[test]
    fn parses_a_declaration() {
        let case = case();
        assert_eq!(case.ready[0], Readiness::Deployment("web".into()));
        let check = &case.checks[0];
        assert_eq!(check.from, ClientPlacement::OtherNodeThan("app=web".into()));
        assert_eq!(check.expectations(ProxyMode::Iptables).len(), 2);
        assert_eq!(check.expectations(ProxyMode::Nftables), &[Assertion::AllOk]);
        assert!(matches!(&check.probe, Probe::Http { count: 30, path, .. } if path == "/"));
        assert_eq!(
            case.sabotage.patch.as_ref().unwrap().merge["spec"]["selector"]["app"],
            "nothing"
        );
        case.validate().unwrap();
    }

    #[test]
    fn a_check_waits_for_its_pauses_and_its_expected_timeouts() {
        let mut check = case().checks[0].clone();
        assert_eq!(check.designed_wait_ms(), 0);
        check.probe = Probe::Http {
            target: "web:80".into(),
            count: 7,
            path: "/".into(),
            interval_ms: 2600,
        };
        assert_eq!(check.designed_wait_ms(), 7 * 2600);
        check.expect = vec![Assertion::AllFailWith(ErrorKind::Timeout)];
        assert_eq!(
            check.designed_wait_ms(),
            7 * u64::from(2600 + REQUEST_TIMEOUT_MS)
        );
        check.probe = Probe::Tcp {
            target: "web:80".into(),
        };
        check.expect = vec![Assertion::TcpResult(Outcome::Timeout)];
        assert_eq!(check.designed_wait_ms(), u64::from(REQUEST_TIMEOUT_MS));
        let mut long = case();
        long.checks.push(check);
        assert!(long.expected_seconds() > case().expected_seconds() + 1.0);
    }

    #[test]
    fn names_are_unique_in_a_catalog() {
        let err = Catalog::new([("a.yaml".into(), case()), ("b.yaml".into(), case())]).unwrap_err();
        assert!(matches!(err, CaseError::Duplicate { .. }), "{err}");
        assert!(err.to_string().contains("a.yaml and b.yaml"), "{err}");
    }

    #[test]
    fn rejects_names_that_cannot_name_a_namespace() {
        let mut c = case();
        c.name = "Cluster_IP".into();
        assert!(c.validate().is_err());
        let mut c = case();
        c.checks[0].expect.clear();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("expects nothing"));
    }

    const STEPS: &str = r#"
name: endpoints-readiness
suite: routing
fixtures: [routing/endpoints-readiness.yaml]
steps:
  - name: unready
    actions:
      - httpGet: {pods: app=web, port: 8080, path: /fail-readiness}
      - patch: {apiVersion: apps/v1, kind: Deployment, name: web, merge: {spec: {replicas: 1}}}
      - nodeAddress: {node: "1", address: "${spareIP:1}"}
      - container: {name: server, image: svcconf/probe:dev, args: [serve]}
      - apply: {apiVersion: v1, kind: Endpoints, metadata: {name: outside}}
    settle: [{endpointSlices: {service: web, ready: 2}}]
    withinSeconds: 20
    checks:
      - name: two-ready
        from: external
        probe: {http: {target: "${nodeIP:0}:30066", intervalMs: 2600}}
        expect: [allOk, oneBackend, {minBackends: 2}, {status: 503}, clientIpNotClient]
sabotage:
  description: publishNotReadyAddresses
  patch: {apiVersion: v1, kind: Service, name: web, merge: {spec: {publishNotReadyAddresses: true}}}
  settle: [{endpointSlices: {service: web, ready: 3}}]
"#;

    #[test]
    fn parses_steps_and_allows_checks_only_in_steps() {
        let case: Case = serde_saphyr::from_str(STEPS).unwrap();
        case.validate().unwrap();
        let step = &case.steps[0];
        assert_eq!(step.within_seconds, 20);
        assert_eq!(step.actions.len(), 5);
        assert_eq!(
            step.actions[0],
            Action::HttpGet {
                pods: "app=web".into(),
                port: 8080,
                path: "/fail-readiness".into()
            }
        );
        assert!(matches!(&step.actions[3], Action::Container { args, .. } if args == &["serve"]));
        let check = &step.checks[0];
        assert_eq!(check.from, ClientPlacement::External);
        assert!(matches!(
            check.probe,
            Probe::Http {
                interval_ms: 2600,
                count: 30,
                ..
            }
        ));
        assert_eq!(check.expect[2], Assertion::MinBackends(2));

        let mut after = case.clone();
        after.sabotage.after_step = Some("unready".into());
        after.validate().unwrap();
        after.sabotage.after_step = Some("ready".into());
        assert!(after
            .validate()
            .unwrap_err()
            .to_string()
            .contains(r#"after step "ready", which the case does not declare"#));

        let mut twice = case.clone();
        twice.steps.push(twice.steps[0].clone());
        assert!(twice
            .validate()
            .unwrap_err()
            .to_string()
            .contains("declared twice"));
        let mut nothing = case.clone();
        nothing.steps[0].checks.clear();
        nothing.steps[0].settle.clear();
        assert!(nothing
            .validate()
            .unwrap_err()
            .to_string()
            .contains("expects nothing"));
        // A step's settle is an expectation: a case may check nothing else.
        let mut settle_only = case.clone();
        settle_only.steps[0].checks.clear();
        settle_only.validate().unwrap();
        let mut no_checks = settle_only;
        no_checks.steps.clear();
        assert!(no_checks
            .validate()
            .unwrap_err()
            .to_string()
            .contains("declares no checks"));
        let mut unsabotaged = case.clone();
        unsabotaged.sabotage.patch = None;
        assert!(unsabotaged
            .validate()
            .unwrap_err()
            .to_string()
            .contains("changes nothing"));
        let mut outside = case;
        outside.sabotage.patch.as_mut().unwrap().namespace = Some("metallb-system".into());
        assert!(outside
            .validate()
            .unwrap_err()
            .to_string()
            .contains("has no restore"));
    }

    #[test]
    fn rejects_unknown_fields() {
        let text = CASE.replace("suite: routing", "suite: routing\nsuites: typo");
        assert!(serde_saphyr::from_str::<Case>(&text).is_err());
    }

    #[test]
    fn a_ready_count_is_a_number_or_a_share_of_the_slice_limit() {
        let read = |count: &str| {
            serde_saphyr::from_str::<Readiness>(&format!(
                "endpointSlices: {{service: web, ready: {count}}}"
            ))
        };
        let Readiness::EndpointSlices { ready, .. } = read("3").unwrap() else {
            panic!("not endpointSlices")
        };
        let on = |ready: &Count, max_endpoints_per_slice| {
            ready.on(ClusterSize {
                max_endpoints_per_slice,
                nodes: 2,
            })
        };
        assert_eq!((on(&ready, 20), ready.fixed()), (3, Some(3)));
        let share = read("\"${maxEndpointsPerSlice:120%}\"").unwrap();
        let Readiness::EndpointSlices { ready, .. } = &share else {
            panic!("not endpointSlices")
        };
        assert_eq!(
            (on(ready, 20), on(ready, 100), ready.fixed()),
            (24, 120, None)
        );
        assert_eq!(
            share.describe(),
            "120% of maxEndpointsPerSlice ready endpoints of Service web"
        );
        let stale = read("\"${maxEndpointsPerSlice:120%+1}\"").unwrap();
        let Readiness::EndpointSlices { ready, .. } = &stale else {
            panic!("not endpointSlices")
        };
        assert_eq!((on(ready, 20), on(ready, 100)), (25, 121));
        let Readiness::EndpointSlices { ready, .. } = read("\"${nodes}\"").unwrap() else {
            panic!("not endpointSlices")
        };
        assert_eq!((on(&ready, 100), ready.fixed()), (2, None));
        let err = read("\"${maxEndpointsPerSlice:lots}\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a count"), "{err}");
    }
}

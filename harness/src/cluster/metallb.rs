//! MetalLB in L2 mode, for the cases that need a LoadBalancer
//! implementation: installed once per cluster by the first such case (or
//! found already installed), with one shared IPAddressPool and an
//! L2Advertisement, plus a small pool per case that asks for one.
//!
//! The release is pinned in `fixtures/metallb/pin.yaml` (version, manifest
//! checksum, images). The manifest itself comes from the offline kit (which
//! reads it from the MetalLB Go module) or `--metallb-manifest`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::images::NodeImages;
use crate::kube::apply::{Applier, ApplyError};
use crate::kube::manifest::{self, ImageMap};
use crate::kube::namespace::{MANAGED_BY, MANAGED_BY_KEY};
use crate::kube::wait::{self, WaitError};
use crate::model::{scaled, IpFamily, ProxyMode};

pub const NAMESPACE: &str = "metallb-system";
/// The pool every LoadBalancer Service without a pool annotation gets an
/// address from.
pub const SHARED_POOL: &str = "svcconf";
/// Addresses in the shared pool; the rest of the range is for case pools.
const SHARED_ADDRESSES: u32 = 64;
const POOL_CRD: &str = "ipaddresspools.metallb.io";
const READY_DEADLINE: Duration = Duration::from_secs(180);
/// The controller serves the validating webhook a little after it is
/// Available (its certificate is generated at start).
const WEBHOOK_DEADLINE: Duration = Duration::from_secs(90);
/// How long an uninstalled MetalLB's namespace may take to go.
const NAMESPACE_GONE_DEADLINE: Duration = Duration::from_secs(90);

/// `fixtures/metallb/pin.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    pub version: String,
    /// Where the manifest is published, for machines with a network.
    pub manifest_url: String,
    pub sha256: String,
    pub images: Vec<String>,
}

impl Pin {
    /// Where the catalog keeps it.
    pub const KEY: &'static str = "fixtures/metallb/pin.yaml";

    /// The catalog's pin.
    pub fn load(project: &crate::catalog::Project) -> Result<Pin, MetallbError> {
        let text = project.file(Self::KEY).ok_or_else(|| MetallbError::Pin {
            path: PathBuf::from(Self::KEY),
            problem: "not in the catalog".into(),
        })?;
        serde_saphyr::from_str(text).map_err(|e| MetallbError::Pin {
            path: PathBuf::from(Self::KEY),
            problem: e.to_string(),
        })
    }
}

/// A run of addresses of one family, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// An address as a number, IPv4 and IPv6 alike.
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

/// The address `n` of the family of `like`.
fn address(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

impl std::str::FromStr for AddressRange {
    type Err = String;

    /// `A-B`, or a CIDR (`A.B.C.D/N`, `P::/N`) without its network's own
    /// first and last addresses.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address range (A-B) or CIDR (A.B.C.D/N, P::/N)");
        let range = if let Some((a, b)) = s.split_once('-') {
            AddressRange {
                first: a.trim().parse().map_err(|_| bad())?,
                last: b.trim().parse().map_err(|_| bad())?,
            }
        } else {
            let (net, bits) = s.split_once('/').ok_or_else(bad)?;
            let net: IpAddr = net.parse().map_err(|_| bad())?;
            let width = if net.is_ipv4() { 32 } else { 128 };
            let bits: u32 = bits
                .parse()
                .ok()
                .filter(|b| *b <= width - 2)
                .ok_or_else(bad)?;
            // The host part's bits (at least 2, at most 128).
            let host = u128::MAX >> (128 - (width - bits));
            let base = number(net) & !host;
            AddressRange {
                first: address(net, base + 1),
                last: address(net, (base | host) - 1),
            }
        };
        if range.first.is_ipv4() != range.last.is_ipv4() {
            return Err(format!("{s:?}: both ends must be of one IP family"));
        }
        if number(range.first) > number(range.last) {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(range)
    }
}

impl AddressRange {
    /// How many addresses it holds (at most `u32::MAX`: more is never used).
    pub fn len(&self) -> u32 {
        (number(self.last) - number(self.first) + 1).min(u32::MAX.into()) as u32
    }

    /// A range holds at least one address (parsing refuses the others).
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn family(&self) -> IpFamily {
        if self.first.is_ipv4() {
            IpFamily::Ipv4
        } else {
            IpFamily::Ipv6
        }
    }

    fn slice(&self, offset: u32, count: u32) -> AddressRange {
        let first = number(self.first) + u128::from(offset);
        AddressRange {
            first: address(self.first, first),
            last: address(self.first, first + u128::from(count) - 1),
        }
    }

    /// For kind: a block per proxy mode near the top of the docker
    /// network's subnet, so clusters of two modes on the same network never
    /// announce the same address (docker hands out addresses from the
    /// bottom; `${spareIP}` takes from the .200–.249 /24s). IPv4: .10–.249
    /// of the mode's /24; IPv6 (the network is a /64): `::ffff:0:B:10` to
    /// `::ffff:0:B:f9`, B the mode's block.
    pub fn for_kind_network(subnet: &str, mode: ProxyMode) -> Result<AddressRange, String> {
        let whole: AddressRange = subnet.parse()?;
        let block = match mode {
            ProxyMode::Iptables => 3,
            ProxyMode::Nftables => 2,
            ProxyMode::Ipvs => 1,
            ProxyMode::Other => 4,
        };
        if let IpAddr::V6(first) = whole.first {
            let [a, b, c, d, ..] = first.segments();
            let at = |last: u16| IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0xffff, 0, block, last));
            return Ok(AddressRange {
                first: at(0x10),
                last: at(0xf9),
            });
        }
        if whole.len() < 4 * 256 {
            return Err(format!(
                "the kind network {subnet} is smaller than a /22; pass --lb-addresses"
            ));
        }
        // `whole.last` is the address before the broadcast address.
        let end = number(whole.last) + 2;
        let start = end - u128::from(block) * 256;
        Ok(AddressRange {
            first: address(whole.first, start + 10),
            last: address(whole.first, start + 249),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetallbError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Pin { path: PathBuf, problem: String },
    #[error("MetalLB is not installed and no manifest was given: run ci/kit/kit build (offline) or pass --metallb-manifest (download {url})")]
    NoManifest { url: String },
    #[error(
        "{path} is not the pinned MetalLB {version} manifest (sha256 {found}, pinned {pinned})"
    )]
    NotPinned {
        path: PathBuf,
        version: String,
        found: String,
        pinned: String,
    },
    #[error("{0}")]
    Manifest(#[from] manifest::ManifestError),
    #[error("installing MetalLB")]
    Apply(#[from] Box<ApplyError>),
    #[error("MetalLB not ready")]
    NotReady(#[from] WaitError),
    #[error("no addresses for LoadBalancer Services: {0}")]
    NoAddresses(String),
    #[error("kube-proxy runs ipvs without strictARP, so every node answers ARP for LoadBalancer addresses and MetalLB L2 cannot work: set ipvs.strictARP: true in the kube-system/kube-proxy ConfigMap")]
    StrictArp,
    #[error("{0}")]
    Images(String),
    #[error("reading the cluster")]
    Api(#[from] kube::Error),
}

/// What the runner needs to install MetalLB on a cluster.
#[derive(Debug, Clone, Default)]
pub struct MetallbSource {
    /// The release manifest (the kit's, or the user's download).
    pub manifest: Option<PathBuf>,
    /// Addresses for the pools; on kind, carved from the docker network.
    pub addresses: Option<AddressRange>,
}

/// MetalLB, ready on one cluster.
#[derive(Debug)]
pub struct Metallb {
    /// Where case pools are cut from (after the shared pool's addresses),
    /// a range per IP family.
    case_ranges: Vec<AddressRange>,
    next: AtomicU32,
}

/// Why a case pool and the objects around it are svcconf's.
fn labels() -> Value {
    json!({ MANAGED_BY_KEY: MANAGED_BY })
}

fn pool(name: &str, ranges: &[AddressRange], only_namespace: Option<&str>) -> Value {
    let addresses: Vec<String> = ranges.iter().map(AddressRange::to_string).collect();
    let mut spec = json!({ "addresses": addresses });
    if let Some(ns) = only_namespace {
        spec["autoAssign"] = json!(false);
        spec["serviceAllocation"] = json!({ "namespaces": [ns] });
    }
    json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": { "name": name, "namespace": NAMESPACE, "labels": labels() },
        "spec": spec,
    })
}

/// Ranges as the terminal shows them.
fn list(ranges: &[AddressRange]) -> String {
    ranges
        .iter()
        .map(AddressRange::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn l2_advertisement() -> Value {
    // No pool selector: every pool is announced, the case pools included.
    json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": { "name": SHARED_POOL, "namespace": NAMESPACE, "labels": labels() },
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads the manifest and checks it is the pinned one.
pub fn read_manifest(
    path: &Path,
    pin: &Pin,
    images: &ImageMap,
) -> Result<Vec<Value>, MetallbError> {
    let bytes = std::fs::read(path).map_err(|source| MetallbError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let found = sha256_hex(&bytes);
    if found != pin.sha256 {
        return Err(MetallbError::NotPinned {
            path: path.to_path_buf(),
            version: pin.version.clone(),
            found,
            pinned: pin.sha256.clone(),
        });
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut docs = manifest::parse_release(&path.display().to_string(), &text)?;
    for doc in &mut docs {
        manifest::map_images(doc, images);
    }
    Ok(docs)
}

/// Installs MetalLB unless it is there, waits for it, and applies the
/// shared pool. `progress` hears about each stage.
#[allow(clippy::too_many_arguments)]
pub async fn install(
    client: &Client,
    applier: &Applier,
    mode: ProxyMode,
    pin: &Pin,
    source: &MetallbSource,
    ranges: &[AddressRange],
    images: &ImageMap,
    node_images: Option<&NodeImages>,
    record: &Installed,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Metallb, MetallbError> {
    if ranges.is_empty() {
        return Err(MetallbError::NoAddresses(
            "pass --lb-addresses A-B (addresses on the nodes' network that nothing else uses)"
                .into(),
        ));
    }
    for range in ranges {
        if range.len() < SHARED_ADDRESSES + 16 {
            return Err(MetallbError::NoAddresses(format!(
                "{range} holds {} addresses; svcconf needs at least {}",
                range.len(),
                SHARED_ADDRESSES + 16
            )));
        }
    }
    if mode == ProxyMode::Ipvs && !strict_arp(client).await? {
        return Err(MetallbError::StrictArp);
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if crds.get_opt(POOL_CRD).await?.is_some() {
        progress("MetalLB already installed: using it".into());
    } else {
        let path = source
            .manifest
            .as_ref()
            .ok_or_else(|| MetallbError::NoManifest {
                url: pin.manifest_url.clone(),
            })?;
        let docs = read_manifest(path, pin, images)?;
        if let Some(nodes) = node_images {
            let wanted: Vec<String> = docs.iter().flat_map(manifest::images).collect();
            nodes
                .ensure(&wanted, true)
                .await
                .map_err(MetallbError::Images)?;
        }
        progress(format!(
            "installing MetalLB {} ({} objects)",
            pin.version,
            docs.len()
        ));
        // Recorded before applying, so a failed install is still removed.
        record.record(&docs).await;
        for doc in &docs {
            applier.apply_cluster_object(doc).await.map_err(Box::new)?;
        }
    }
    let started = Instant::now();
    wait::until(
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        Some("metadata.name=controller"),
        format!("MetalLB controller Deployment in {NAMESPACE}"),
        scaled(READY_DEADLINE),
        wait::deployment_available("controller"),
    )
    .await?;
    wait::until(
        Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
        Some("metadata.name=speaker"),
        format!("MetalLB speaker DaemonSet in {NAMESPACE}"),
        scaled(READY_DEADLINE),
        wait::daemonset_ready("speaker"),
    )
    .await?;
    let shared: Vec<AddressRange> = ranges
        .iter()
        .map(|r| r.slice(0, SHARED_ADDRESSES))
        .collect();
    let case_ranges: Vec<AddressRange> = ranges
        .iter()
        .map(|r| r.slice(SHARED_ADDRESSES, r.len() - SHARED_ADDRESSES))
        .collect();
    let ours = [pool(SHARED_POOL, &shared, None), l2_advertisement()];
    record.record(&ours).await;
    for doc in &ours {
        apply_through_webhook(applier, doc)
            .await
            .map_err(Box::new)?;
    }
    progress(format!(
        "MetalLB ready in {:.0}s: pool {SHARED_POOL} {}, case pools from {}",
        started.elapsed().as_secs_f64(),
        list(&shared),
        list(&case_ranges)
    ));
    Ok(Metallb {
        case_ranges,
        next: AtomicU32::new(0),
    })
}

/// The webhook refuses connections until the controller has its
/// certificate: retried (the refusal is not the object's fault) until the
/// deadline, and the last refusal is the error.
async fn apply_through_webhook(applier: &Applier, doc: &Value) -> Result<(), ApplyError> {
    let started = Instant::now();
    loop {
        match applier.apply_cluster_object(doc).await {
            Ok(()) => return Ok(()),
            Err(e)
                if started.elapsed() < scaled(WEBHOOK_DEADLINE) && is_webhook_unavailable(&e) =>
            {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_webhook_unavailable(e: &ApplyError) -> bool {
    let text = crate::cluster::error_chain(e);
    text.contains("failed calling webhook") || text.contains("no endpoints available")
}

/// kube-proxy's configuration says `strictARP: true`.
async fn strict_arp(client: &Client) -> Result<bool, MetallbError> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "kube-system")
        .get_opt("kube-proxy")
        .await?;
    Ok(cm
        .and_then(|c| c.data)
        .and_then(|d| d.get("config.conf").cloned())
        .is_some_and(|conf| {
            conf.lines()
                .any(|l| l.trim().replace(' ', "") == "strictARP:true")
        }))
}

impl Metallb {
    /// A pool of `count` fresh addresses that only `namespace`'s Services
    /// may use (by annotation `metallb.io/address-pool: <namespace>`).
    pub async fn create_case_pool(
        &self,
        applier: &Applier,
        namespace: &str,
        count: u8,
    ) -> Result<String, ApplyError> {
        let count = u32::from(count.max(1));
        // Case pools live only as long as their case: wrapping around reuses
        // addresses of pools long deleted. Each family's range has a slot.
        let slots = self
            .case_ranges
            .iter()
            .map(AddressRange::len)
            .min()
            .unwrap_or(0)
            / count;
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % slots.max(1);
        let ranges: Vec<AddressRange> = self
            .case_ranges
            .iter()
            .map(|r| r.slice(slot * count, count))
            .collect();
        applier
            .apply_cluster_object(&pool(namespace, &ranges, Some(namespace)))
            .await?;
        Ok(list(&ranges))
    }

    /// Deletes a case's pool.
    pub async fn delete_case_pool(
        &self,
        applier: &Applier,
        namespace: &str,
    ) -> Result<(), ApplyError> {
        let doc = pool(namespace, &[], Some(namespace));
        applier.delete_object(&doc).await
    }
}

/// MetalLB on one cluster, installed by the first case that needs it; every
/// later case gets the same answer, a failed install included.
pub struct OnFirstUse {
    source: MetallbSource,
    installed: tokio::sync::OnceCell<Result<std::sync::Arc<Metallb>, String>>,
}

impl OnFirstUse {
    pub fn new(source: MetallbSource) -> Self {
        OnFirstUse {
            source,
            installed: Default::default(),
        }
    }

    /// Where the manifest and the addresses come from.
    pub fn source(&self) -> &MetallbSource {
        &self.source
    }

    /// MetalLB, if a case has installed it.
    pub fn installed(&self) -> Option<&std::sync::Arc<Metallb>> {
        self.installed.get().and_then(|r| r.as_ref().ok())
    }

    /// MetalLB on `cluster`, installed now if no case did yet: on a kind
    /// cluster, given no addresses, from a slice of the kind network.
    pub async fn get(
        &self,
        cluster: &super::Cluster,
        applier: &Applier,
        project: &crate::catalog::Project,
        images: &ImageMap,
    ) -> Result<std::sync::Arc<Metallb>, String> {
        let chain = |e: &dyn std::error::Error| super::error_chain(e);
        self.installed
            .get_or_init(|| async {
                let mode = cluster.info.mode;
                let source = &self.source;
                let mut ranges: Vec<AddressRange> = source.addresses.into_iter().collect();
                if ranges.is_empty() && cluster.node_images.is_some() {
                    // A block of each family the cluster runs.
                    let families = &cluster.info.families;
                    for subnet in super::kind_network_subnets().await? {
                        let range = AddressRange::for_kind_network(&subnet, mode)?;
                        let family = range.family();
                        if families.contains(&family)
                            || (families.is_empty() && family == IpFamily::Ipv4)
                        {
                            ranges.push(range);
                        }
                    }
                }
                let pin = Pin::load(project).map_err(|e| chain(&e))?;
                let progress = |line: String| tracing::info!(%mode, "{line}");
                install(
                    &cluster.client,
                    applier,
                    mode,
                    &pin,
                    source,
                    &ranges,
                    images,
                    cluster.node_images.as_ref(),
                    &cluster.installed,
                    &progress,
                )
                .await
                .map(std::sync::Arc::new)
                .map_err(|e| chain(&e))
            })
            .await
            .clone()
    }
}

/// Cluster-wide objects a run installed on a cluster it does not own (a
/// kubeconfig cluster): removed at teardown, newest first.
#[derive(Debug, Default)]
pub struct Installed(Mutex<Vec<Value>>);

impl Installed {
    pub async fn record(&self, docs: &[Value]) {
        self.0.lock().await.extend(docs.iter().cloned());
    }

    /// Deletes everything recorded, then waits for the namespaces among it
    /// to be gone (a next run could not install into a terminating one);
    /// one line per failure.
    pub async fn remove(&self, applier: &Applier) -> Vec<String> {
        let docs: Vec<Value> = std::mem::take(&mut *self.0.lock().await);
        let mut problems = Vec::new();
        for doc in docs.iter().rev() {
            if let Err(e) = applier.delete_object(doc).await {
                problems.push(crate::cluster::error_chain(&e));
            }
        }
        let namespaces = Api::<Namespace>::all(applier.client().clone());
        for doc in docs.iter().filter(|d| d["kind"] == "Namespace") {
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let started = Instant::now();
            loop {
                match namespaces.get_opt(name).await {
                    Ok(None) => break,
                    Ok(Some(_)) if started.elapsed() < scaled(NAMESPACE_GONE_DEADLINE) => {
                        tokio::time::sleep(Duration::from_secs(1)).await
                    }
                    Ok(Some(_)) => {
                        problems.push(format!(
                            "namespace {name} still there {}s after its deletion",
                            scaled(NAMESPACE_GONE_DEADLINE).as_secs()
                        ));
                        break;
                    }
                    Err(e) => {
                        problems.push(format!("namespace {name}: {e}"));
                        break;
                    }
                }
            }
        }
        problems
    }

    pub async fn is_empty(&self) -> bool {
        self.0.lock().await.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_from_dashes_and_cidrs() {
        let r: AddressRange = "172.18.255.10-172.18.255.249".parse().unwrap();
        assert_eq!(r.len(), 240);
        let c: AddressRange = "10.0.0.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.1-10.0.0.254");
        assert!("10.0.0.9-10.0.0.1".parse::<AddressRange>().is_err());
        assert!("nonsense".parse::<AddressRange>().is_err());
        let v6: AddressRange = "fd00::/120".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00::1-fd00::fe");
        assert!("10.0.0.1-fd00::1".parse::<AddressRange>().is_err());
    }

    #[test]
    fn kind_blocks_differ_per_mode_and_stay_clear_of_spare_addresses() {
        let ipt = AddressRange::for_kind_network("172.18.0.0/16", ProxyMode::Iptables).unwrap();
        let nft = AddressRange::for_kind_network("172.18.0.0/16", ProxyMode::Nftables).unwrap();
        assert_eq!(ipt.to_string(), "172.18.253.10-172.18.253.249");
        assert_eq!(nft.to_string(), "172.18.254.10-172.18.254.249");
        assert!(AddressRange::for_kind_network("172.18.0.0/24", ProxyMode::Iptables).is_err());
        let v6 =
            AddressRange::for_kind_network("fc00:f853:ccd:e793::/64", ProxyMode::Nftables).unwrap();
        assert_eq!(
            v6.to_string(),
            "fc00:f853:ccd:e793:ffff:0:2:10-fc00:f853:ccd:e793:ffff:0:2:f9"
        );
        assert_eq!(v6.len(), 234);
        assert_eq!(v6.family(), IpFamily::Ipv6);
    }

    #[test]
    fn case_pools_are_disjoint_slices_after_the_shared_pool() {
        let range: AddressRange = "172.18.253.10-172.18.253.249".parse().unwrap();
        let shared = range.slice(0, SHARED_ADDRESSES);
        let cases = range.slice(SHARED_ADDRESSES, range.len() - SHARED_ADDRESSES);
        assert_eq!(shared.last, IpAddr::V4(Ipv4Addr::new(172, 18, 253, 73)));
        assert_eq!(cases.first, IpAddr::V4(Ipv4Addr::new(172, 18, 253, 74)));
        let one = pool(
            "svcconf-lb-assigned-abcde",
            &[cases.slice(0, 1)],
            Some("ns"),
        );
        assert_eq!(one["spec"]["addresses"][0], "172.18.253.74-172.18.253.74");
        assert_eq!(one["spec"]["autoAssign"], false);
        assert_eq!(one["spec"]["serviceAllocation"]["namespaces"][0], "ns");
        assert!(pool(SHARED_POOL, &[shared], None)["spec"]
            .get("autoAssign")
            .is_none());
    }

    #[test]
    fn checksums_are_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

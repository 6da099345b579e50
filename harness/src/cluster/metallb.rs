//! MetalLB in L2 mode, for the cases that need a LoadBalancer
//! implementation: installed once per cluster by the first such case (or
//! found already installed), with one shared IPAddressPool and an
//! L2Advertisement, plus a small pool per case that asks for one.
//!
//! The release is pinned in `fixtures/metallb/pin.yaml` (version, manifest
//! checksum, images). The manifest itself comes from the offline kit (which
//! reads it from the MetalLB Go module) or `--metallb-manifest`.

use std::net::Ipv4Addr;
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
use crate::model::{scaled, ProxyMode};

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

/// A run of IPv4 addresses, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl std::str::FromStr for AddressRange {
    type Err = String;

    /// `A-B` or `A.B.C.D/N` (the network's own and broadcast addresses left out).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IPv4 range (A-B) or CIDR (A.B.C.D/N)");
        let range = if let Some((a, b)) = s.split_once('-') {
            AddressRange {
                first: a.trim().parse().map_err(|_| bad())?,
                last: b.trim().parse().map_err(|_| bad())?,
            }
        } else {
            let (net, bits) = s.split_once('/').ok_or_else(bad)?;
            let net: Ipv4Addr = net.parse().map_err(|_| bad())?;
            let bits: u32 = bits.parse().ok().filter(|b| *b <= 30).ok_or_else(bad)?;
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            let base = u32::from(net) & mask;
            AddressRange {
                first: Ipv4Addr::from(base + 1),
                last: Ipv4Addr::from((base | !mask) - 1),
            }
        };
        if u32::from(range.first) > u32::from(range.last) {
            return Err(format!("{s:?}: the range ends before it starts"));
        }
        Ok(range)
    }
}

impl AddressRange {
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// A range holds at least one address (parsing refuses the others).
    pub fn is_empty(&self) -> bool {
        false
    }

    fn slice(&self, offset: u32, count: u32) -> AddressRange {
        let first = u32::from(self.first) + offset;
        AddressRange {
            first: Ipv4Addr::from(first),
            last: Ipv4Addr::from(first + count - 1),
        }
    }

    /// For kind: one /24 near the top of the docker network's IPv4 subnet per
    /// proxy mode, so clusters of two modes on the same network never
    /// announce the same address (docker hands out addresses from the bottom;
    /// `${spareIP}` takes from the .200–.249 /24s).
    pub fn for_kind_network(subnet: &str, mode: ProxyMode) -> Result<AddressRange, String> {
        let whole: AddressRange = subnet.parse()?;
        if whole.len() < 4 * 256 {
            return Err(format!(
                "the kind network {subnet} is smaller than a /22; pass --lb-addresses"
            ));
        }
        let block = match mode {
            ProxyMode::Iptables => 3,
            ProxyMode::Nftables => 2,
            ProxyMode::Ipvs => 1,
            ProxyMode::Other => 4,
        };
        // `whole.last` is the address before the broadcast address.
        let end = u32::from(whole.last) + 2;
        let start = end - block * 256;
        // .10–.249 of that /24: clear of its network and broadcast ends.
        Ok(AddressRange {
            first: Ipv4Addr::from(start + 10),
            last: Ipv4Addr::from(start + 249),
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
    /// Where case pools are cut from (after the shared pool's addresses).
    case_range: AddressRange,
    next: AtomicU32,
}

/// Why a case pool and the objects around it are svcconf's.
fn labels() -> Value {
    json!({ MANAGED_BY_KEY: MANAGED_BY })
}

fn pool(name: &str, range: AddressRange, only_namespace: Option<&str>) -> Value {
    let mut spec = json!({ "addresses": [range.to_string()] });
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
    images: &ImageMap,
    node_images: Option<&NodeImages>,
    record: &Installed,
    progress: &(dyn Fn(String) + Send + Sync),
) -> Result<Metallb, MetallbError> {
    let range = source.addresses.ok_or_else(|| {
        MetallbError::NoAddresses(
            "pass --lb-addresses A-B (addresses on the nodes' network that nothing else uses)"
                .into(),
        )
    })?;
    if range.len() < SHARED_ADDRESSES + 16 {
        return Err(MetallbError::NoAddresses(format!(
            "{range} holds {} addresses; svcconf needs at least {}",
            range.len(),
            SHARED_ADDRESSES + 16
        )));
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
    let shared = range.slice(0, SHARED_ADDRESSES);
    let case_range = range.slice(SHARED_ADDRESSES, range.len() - SHARED_ADDRESSES);
    let ours = [pool(SHARED_POOL, shared, None), l2_advertisement()];
    record.record(&ours).await;
    for doc in &ours {
        apply_through_webhook(applier, doc)
            .await
            .map_err(Box::new)?;
    }
    progress(format!(
        "MetalLB ready in {:.0}s: pool {SHARED_POOL} {shared}, case pools from {case_range}",
        started.elapsed().as_secs_f64()
    ));
    Ok(Metallb {
        case_range,
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
    ) -> Result<AddressRange, ApplyError> {
        let count = u32::from(count.max(1));
        // Case pools live only as long as their case: wrapping around reuses
        // addresses of pools long deleted.
        let slots = self.case_range.len() / count;
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % slots;
        let range = self.case_range.slice(slot * count, count);
        applier
            .apply_cluster_object(&pool(namespace, range, Some(namespace)))
            .await?;
        Ok(range)
    }

    /// Deletes a case's pool.
    pub async fn delete_case_pool(
        &self,
        applier: &Applier,
        namespace: &str,
    ) -> Result<(), ApplyError> {
        let doc = pool(namespace, self.case_range.slice(0, 1), Some(namespace));
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
                let mut source = self.source.clone();
                if source.addresses.is_none() && cluster.node_images.is_some() {
                    let subnet = super::kind_network_subnet().await?;
                    source.addresses = Some(AddressRange::for_kind_network(&subnet, mode)?);
                }
                let pin = Pin::load(project).map_err(|e| chain(&e))?;
                let progress = |line: String| tracing::info!(%mode, "{line}");
                install(
                    &cluster.client,
                    applier,
                    mode,
                    &pin,
                    &source,
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
    }

    #[test]
    fn kind_blocks_differ_per_mode_and_stay_clear_of_spare_addresses() {
        let ipt = AddressRange::for_kind_network("172.18.0.0/16", ProxyMode::Iptables).unwrap();
        let nft = AddressRange::for_kind_network("172.18.0.0/16", ProxyMode::Nftables).unwrap();
        assert_eq!(ipt.to_string(), "172.18.253.10-172.18.253.249");
        assert_eq!(nft.to_string(), "172.18.254.10-172.18.254.249");
        assert!(AddressRange::for_kind_network("172.18.0.0/24", ProxyMode::Iptables).is_err());
    }

    #[test]
    fn case_pools_are_disjoint_slices_after_the_shared_pool() {
        let range: AddressRange = "172.18.253.10-172.18.253.249".parse().unwrap();
        let shared = range.slice(0, SHARED_ADDRESSES);
        let cases = range.slice(SHARED_ADDRESSES, range.len() - SHARED_ADDRESSES);
        assert_eq!(shared.last, Ipv4Addr::new(172, 18, 253, 73));
        assert_eq!(cases.first, Ipv4Addr::new(172, 18, 253, 74));
        let one = pool("svcconf-lb-assigned-abcde", cases.slice(0, 1), Some("ns"));
        assert_eq!(one["spec"]["addresses"][0], "172.18.253.74-172.18.253.74");
        assert_eq!(one["spec"]["autoAssign"], false);
        assert_eq!(one["spec"]["serviceAllocation"]["namespaces"][0], "ns");
        assert!(pool(SHARED_POOL, shared, None)["spec"]
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

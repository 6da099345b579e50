//! A second Service range for a case (ServiceCIDR, networking.k8s.io/v1, GA
//! in v1.33): a small block of the documentation ranges, claimed by name so
//! that concurrent runs (a case plain and sabotaged) never share one, and
//! found again by the case namespace it is labelled with.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};

use super::wait::{self, Progress, WaitError};
use crate::model::IpFamily;
use crate::template::namespace_hash;

/// The label naming the case namespace a ServiceCIDR was made for.
pub const NAMESPACE_LABEL: &str = "svcconf.io/namespace";

/// The ranges blocks are taken from (RFC 5737's TEST-NET-2 and TEST-NET-3:
/// never a real network, so never a cluster's own pods or nodes).
const RANGES: [[u8; 3]; 2] = [[198, 51, 100], [203, 0, 113]];

/// A block's prefix length: 8 addresses, 6 of them allocatable (the
/// allocator keeps an IPv4 range's first and last).
const PREFIX: u8 = 29;

/// IPv6 blocks: 64 /125s (8 addresses each) of RFC 3849's documentation
/// prefix, 2001:db8:5ec::/119.
const RANGE_V6: [u16; 3] = [0x2001, 0x0db8, 0x05ec];
const PREFIX_V6: u8 = 125;

/// How long the ServiceCIDR controller may take to mark a new range Ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The `attempt`-th block tried for `namespace` in `family`: its name and
/// CIDR. The first is spread by the namespace; later ones walk on from it.
pub fn block(namespace: &str, attempt: u32, family: IpFamily) -> (String, String) {
    let per_range = 256 / (1u32 << (32 - PREFIX));
    let total = per_range * RANGES.len() as u32;
    let index = (namespace_hash(namespace) % total + attempt) % total;
    if family == IpFamily::Ipv6 {
        let [a, b, c] = RANGE_V6;
        let last = (index << (128 - PREFIX_V6)) as u16;
        let base = Ipv6Addr::new(a, b, c, 0, 0, 0, 0, last);
        return (
            format!("svcconf-{a:x}-{b:x}-{c:x}-{last:x}-{PREFIX_V6}"),
            format!("{base}/{PREFIX_V6}"),
        );
    }
    let [a, b, c] = RANGES[(index / per_range) as usize];
    let d = ((index % per_range) << (32 - PREFIX)) as u8;
    (
        format!("svcconf-{a}-{b}-{c}-{d}-{PREFIX}"),
        format!("{a}.{b}.{c}.{d}/{PREFIX}"),
    )
}

/// The `n`-th address of `cidr` (`1` is the first allocatable).
pub fn address(cidr: &str, n: u32) -> Result<String, String> {
    let (base, len) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr} is not a CIDR"))?;
    let base: IpAddr = base.parse().map_err(|_| format!("{cidr} is not a CIDR"))?;
    let len: u32 = len.parse().map_err(|_| format!("{cidr} is not a CIDR"))?;
    let bits = if base.is_ipv4() { 32 } else { 128 };
    // Blocks are small: a larger one is only ever asked for its first few.
    let size = 1u128.checked_shl(bits - len.min(bits)).unwrap_or(u128::MAX);
    if u128::from(n) + 1 >= size || n == 0 {
        return Err(format!(
            "address #{n} of {cidr}: only #1 to #{} are allocatable",
            size.saturating_sub(2)
        ));
    }
    Ok(match base {
        IpAddr::V4(v4) => Ipv4Addr::from(u32::from(v4) + n).to_string(),
        IpAddr::V6(v6) => Ipv6Addr::from(u128::from(v6) + u128::from(n)).to_string(),
    })
}

/// Creates a ServiceCIDR for `namespace` on the first free block; `Ok` is
/// its name and CIDR. `claimed` is told each name before its create is
/// sent (a create past its deadline may still land).
pub async fn claim(
    client: &Client,
    namespace: &str,
    family: IpFamily,
    claimed: impl AsyncFn(&str),
) -> Result<(String, String), kube::Error> {
    let api = Api::<ServiceCIDR>::all(client.clone());
    let mut attempt = 0;
    loop {
        let (name, cidr) = block(namespace, attempt, family);
        let object = ServiceCIDR {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_string(), namespace.to_string())].into()),
                ..Default::default()
            },
            spec: Some(ServiceCIDRSpec {
                cidrs: Some(vec![cidr.clone()]),
            }),
            status: None,
        };
        claimed(&name).await;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return Ok((name, cidr)),
            // Another run's block: walk on (there are 64).
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 63 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Waits until the ServiceCIDR `name` is Ready (the API allocates from it).
pub async fn wait_ready(client: &Client, name: &str, deadline: Duration) -> Result<(), WaitError> {
    let api = Api::<ServiceCIDR>::all(client.clone());
    let field = format!("metadata.name={name}");
    wait::until(
        api,
        Some(&field),
        format!("ServiceCIDR {name} Ready"),
        deadline,
        |cidrs: &[&ServiceCIDR]| {
            let ready = cidrs.first().and_then(|c| {
                c.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| (c.status.clone(), c.message.clone()))
            });
            match ready {
                Some((s, _)) if s == "True" => Progress {
                    done: true,
                    status: "Ready".into(),
                },
                Some((s, m)) => Progress {
                    done: false,
                    status: format!("Ready {s}: {m}"),
                },
                None => Progress {
                    done: false,
                    status: "no Ready condition yet".into(),
                },
            }
        },
    )
    .await
    .map(drop)
}

/// The CIDR of the ServiceCIDR made for `namespace`.
pub async fn of_namespace(client: &Client, namespace: &str) -> Result<Option<String>, kube::Error> {
    let api = Api::<ServiceCIDR>::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!("{NAMESPACE_LABEL}={namespace}")))
        .await?;
    Ok(list
        .items
        .iter()
        .find_map(|c| c.spec.as_ref()?.cidrs.as_ref()?.first().cloned()))
}

/// Deletes the ServiceCIDR `name`; the API keeps it (finalizer) until no
/// Service holds an address only it covers. The line is for the evidence.
pub async fn delete(client: &Client, name: &str) -> Result<String, kube::Error> {
    let api = Api::<ServiceCIDR>::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(either) => {
            let left = either
                .left()
                .map(|c| c.finalizers().to_vec())
                .unwrap_or_default();
            Ok(if left.is_empty() {
                format!("deleted ServiceCIDR {name}")
            } else {
                format!(
                    "deleted ServiceCIDR {name} (kept by {} until its Services are gone)",
                    left.join(", ")
                )
            })
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Ok(format!("ServiceCIDR {name} was never created"))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_spread_by_namespace_and_walk_over_both_ranges() {
        let v4 = IpFamily::Ipv4;
        let (name, cidr) = block("svcconf-service-cidr-abcde", 0, v4);
        assert_eq!(name, format!("svcconf-{}", cidr.replace(['.', '/'], "-")));
        let all: std::collections::BTreeSet<String> = (0..64)
            .map(|i| block("svcconf-service-cidr-abcde", i, v4).1)
            .collect();
        assert_eq!(all.len(), 64);
        assert!(all.contains("198.51.100.0/29") && all.contains("203.0.113.248/29"));
        assert_eq!(block("ns", 64, v4), block("ns", 0, v4));
        assert_ne!(block("ns-a", 0, v4), block("ns-b", 0, v4));
        let v6: std::collections::BTreeSet<String> =
            (0..64).map(|i| block("ns", i, IpFamily::Ipv6).1).collect();
        assert_eq!(v6.len(), 64);
        assert!(v6.contains("2001:db8:5ec::/125") && v6.contains("2001:db8:5ec::1f8/125"));
    }

    #[test]
    fn addresses_are_the_allocatable_ones() {
        assert_eq!(address("203.0.113.8/29", 1).unwrap(), "203.0.113.9");
        assert_eq!(address("203.0.113.8/29", 6).unwrap(), "203.0.113.14");
        assert!(address("203.0.113.8/29", 7).is_err());
        assert!(address("203.0.113.8/29", 0).is_err());
        assert_eq!(
            address("2001:db8:5ec::8/125", 1).unwrap(),
            "2001:db8:5ec::9"
        );
        assert!(address("2001:db8:5ec::8/125", 7).is_err());
    }
}

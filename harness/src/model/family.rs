//! IP families, the axis beside the proxy mode: a dual-stack cluster runs
//! every case once per family.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One IP family, as `Service.spec.ipFamilies` names them (`IPv4`, `IPv6`);
/// written `ipv4` / `ipv6` in result names and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
    }

    /// Kubernetes' spelling, for `spec.ipFamilies`.
    pub fn kubernetes(self) -> &'static str {
        match self {
            IpFamily::Ipv4 => "IPv4",
            IpFamily::Ipv6 => "IPv6",
        }
    }

    /// The other family.
    pub fn other(self) -> IpFamily {
        match self {
            IpFamily::Ipv4 => IpFamily::Ipv6,
            IpFamily::Ipv6 => IpFamily::Ipv4,
        }
    }

    /// A family as `spec.ipFamilies` writes it (`IPv4`, `IPv6`).
    pub fn from_kubernetes(name: &str) -> Option<IpFamily> {
        [IpFamily::Ipv4, IpFamily::Ipv6]
            .into_iter()
            .find(|f| f.kubernetes() == name)
    }

    /// The family of an address as Kubernetes writes it; `None` for what
    /// is not an address.
    pub fn of(address: &str) -> Option<IpFamily> {
        match address.trim().parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(_) => Some(IpFamily::Ipv4),
            std::net::IpAddr::V6(_) => Some(IpFamily::Ipv6),
        }
    }

    /// The `n`-th address of the family's range reserved for documentation
    /// (192.0.2.0/24, RFC 5737; 2001:db8::/32, RFC 3849): an address no
    /// cluster holds, for an endpoint nothing answers.
    pub fn documentation_ip(self, n: u8) -> String {
        match self {
            IpFamily::Ipv4 => format!("192.0.2.{n}"),
            IpFamily::Ipv6 => format!("2001:db8::{n:x}"),
        }
    }

    /// The first of `addresses` in this family.
    pub fn pick<'a, S: AsRef<str> + 'a>(
        self,
        addresses: impl IntoIterator<Item = &'a S>,
    ) -> Option<&'a str> {
        addresses
            .into_iter()
            .map(AsRef::as_ref)
            .find(|a| IpFamily::of(a) == Some(self))
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The families a cluster is made with, or runs are asked for:
/// `--ip-family ipv4|ipv6|dual`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IpFamilies {
    #[default]
    Ipv4,
    Ipv6,
    Dual,
}

/// An `--ip-family` value that is none of ipv4, ipv6, dual.
#[derive(Debug, thiserror::Error)]
#[error("unknown IP family {0:?}; expected one of ipv4, ipv6, dual")]
pub struct UnknownIpFamily(pub String);

impl IpFamilies {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamilies::Ipv4 => "ipv4",
            IpFamilies::Ipv6 => "ipv6",
            IpFamilies::Dual => "dual",
        }
    }

    /// The families cases run in, IPv4 first.
    pub fn families(self) -> Vec<IpFamily> {
        match self {
            IpFamilies::Ipv4 => vec![IpFamily::Ipv4],
            IpFamilies::Ipv6 => vec![IpFamily::Ipv6],
            IpFamilies::Dual => vec![IpFamily::Ipv4, IpFamily::Ipv6],
        }
    }

    /// What a cluster whose addresses are of `families` is.
    pub fn of(families: &[IpFamily]) -> Option<IpFamilies> {
        let v4 = families.contains(&IpFamily::Ipv4);
        let v6 = families.contains(&IpFamily::Ipv6);
        match (v4, v6) {
            (true, true) => Some(IpFamilies::Dual),
            (true, false) => Some(IpFamilies::Ipv4),
            (false, true) => Some(IpFamilies::Ipv6),
            (false, false) => None,
        }
    }
}

impl fmt::Display for IpFamilies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IpFamilies {
    type Err = UnknownIpFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ipv4" => Ok(IpFamilies::Ipv4),
            "ipv6" => Ok(IpFamilies::Ipv6),
            "dual" => Ok(IpFamilies::Dual),
            _ => Err(UnknownIpFamily(s.to_string())),
        }
    }
}

/// `host:port` with an IPv6 host in brackets (`[fd00::1]:80`), as URLs and
/// socket addresses want it; a name or an IPv4 host, or a target already
/// bracketed, stays as written.
pub fn bracket_host(target: &str) -> String {
    match target.rsplit_once(':') {
        Some((host, port))
            if IpFamily::of(host) == Some(IpFamily::Ipv6) && port.parse::<u16>().is_ok() =>
        {
            format!("[{host}]:{port}")
        }
        _ => target.to_string(),
    }
}

/// One address as a prefix of its own (`/32`, `/128`), as `ip addr`
/// places it on an interface.
pub fn host_prefix(address: &str) -> String {
    match IpFamily::of(address) {
        Some(IpFamily::Ipv6) => format!("{address}/128"),
        _ => format!("{address}/32"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_addresses_are_of_their_family() {
        assert_eq!(IpFamily::Ipv4.documentation_ip(10), "192.0.2.10");
        assert_eq!(IpFamily::Ipv6.documentation_ip(10), "2001:db8::a");
        for f in [IpFamily::Ipv4, IpFamily::Ipv6] {
            assert_eq!(IpFamily::of(&f.documentation_ip(255)), Some(f));
        }
    }

    #[test]
    fn families_of_addresses_and_flags() {
        assert_eq!(IpFamily::of("10.96.0.1"), Some(IpFamily::Ipv4));
        assert_eq!(IpFamily::of("fd00:10:96::1"), Some(IpFamily::Ipv6));
        assert_eq!(IpFamily::of("web"), None);
        let both = ["10.96.0.1".to_string(), "fd00:10:96::a".to_string()];
        assert_eq!(IpFamily::Ipv6.pick(&both), Some("fd00:10:96::a"));
        assert_eq!("Dual".parse::<IpFamilies>().unwrap(), IpFamilies::Dual);
        assert!("ipv5"
            .parse::<IpFamilies>()
            .unwrap_err()
            .to_string()
            .contains("ipv5"));
        assert_eq!(IpFamilies::of(&[IpFamily::Ipv6]), Some(IpFamilies::Ipv6));
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(bracket_host("fd00:10:96::a:80"), "[fd00:10:96::a]:80");
        assert_eq!(bracket_host("[fd00::1]:80"), "[fd00::1]:80");
        assert_eq!(bracket_host("10.96.0.1:80"), "10.96.0.1:80");
        assert_eq!(bracket_host("web:80"), "web:80");
        assert_eq!(bracket_host("web"), "web");
        assert_eq!(host_prefix("fc00::c8:1"), "fc00::c8:1/128");
        assert_eq!(host_prefix("172.18.200.3"), "172.18.200.3/32");
    }
}

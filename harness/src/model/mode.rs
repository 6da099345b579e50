//! kube-proxy's modes, the axis every case runs along.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kube-proxy mode (`KubeProxyConfiguration.mode`), or `other`: a
/// cluster whose Services something else programs (a kube-proxy
/// replacement, or nothing), judged by behaviour alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Iptables,
    Nftables,
    Ipvs,
    Other,
}

/// A proxy mode name that is not one of [`ProxyMode::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown proxy mode {0:?}; expected one of iptables, nftables, ipvs, other")]
pub struct UnknownProxyMode(pub String);

impl ProxyMode {
    /// kube-proxy's modes: what kind clusters are made in.
    pub const ALL: [ProxyMode; 3] = [ProxyMode::Iptables, ProxyMode::Nftables, ProxyMode::Ipvs];

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
            ProxyMode::Ipvs => "ipvs",
            ProxyMode::Other => "other",
        }
    }

    /// Parses a comma-separated list (`iptables,nftables`), keeping the order
    /// given and dropping repeats.
    pub fn parse_list(list: &str) -> Result<Vec<ProxyMode>, UnknownProxyMode> {
        let mut modes = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mode: ProxyMode = part.parse()?;
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        if modes.is_empty() {
            return Err(UnknownProxyMode(list.to_string()));
        }
        Ok(modes)
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProxyMode {
    type Err = UnknownProxyMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "iptables" => Ok(ProxyMode::Iptables),
            "nftables" => Ok(ProxyMode::Nftables),
            "ipvs" => Ok(ProxyMode::Ipvs),
            "other" => Ok(ProxyMode::Other),
            _ => Err(UnknownProxyMode(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_in_order_without_repeats() {
        let modes = ProxyMode::parse_list("nftables, iptables,nftables").unwrap();
        assert_eq!(modes, vec![ProxyMode::Nftables, ProxyMode::Iptables]);
    }

    #[test]
    fn rejects_unknown_modes_by_name() {
        let err = ProxyMode::parse_list("iptables,userspace").unwrap_err();
        assert!(err.to_string().contains("\"userspace\""), "{err}");
        assert!(ProxyMode::parse_list(" , ").is_err());
    }
}

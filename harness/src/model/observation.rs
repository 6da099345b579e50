//! What a probe reported: the probe crate's own report types (read
//! leniently there: a field the probe does not send is empty, and an empty
//! observation fails its expectations instead of passing them), with where
//! the probe ran.

use serde::{Deserialize, Serialize};

pub use svcconf_probe::{DnsReport, ErrorCounts, HttpReport, TcpReport};

/// The output of one probe run, with where it ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    /// The client pod the probe ran in.
    pub client_pod: String,
    pub client_node: String,
    pub client_ip: String,
    /// The command that ran.
    pub command: Vec<String>,
    pub report: ProbeReport,
    /// The probe's raw stdout, kept as evidence.
    pub raw: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "role")]
pub enum ProbeReport {
    Http(HttpReport),
    Tcp(TcpReport),
    Dns(DnsReport),
    Warnings(WarningsReport),
}

/// What the API server answered a dry-run update of one object with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarningsReport {
    /// `Kind name`.
    pub object: String,
    /// Each warning's text, in the order of its headers.
    pub warnings: Vec<String>,
}

impl ProbeReport {
    pub fn kind(&self) -> super::ReportKind {
        match self {
            ProbeReport::Http(_) => super::ReportKind::Http,
            ProbeReport::Tcp(_) => super::ReportKind::Tcp,
            ProbeReport::Dns(_) => super::ReportKind::Dns,
            ProbeReport::Warnings(_) => super::ReportKind::Warnings,
        }
    }
}

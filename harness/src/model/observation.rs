//! What a probe reported. These mirror the JSON that `svcconf-probe` prints
//! (see probe/), read leniently: a field the probe does not send is empty,
//! and an empty observation fails its expectations instead of passing them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}

/// `svcconf-probe http URL --count N`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpReport {
    pub url: String,
    pub count: u32,
    pub ok: u32,
    /// Hostname of the backend (its pod name) → answers.
    pub backends: BTreeMap<String, u32>,
    /// Client address the backend saw → answers.
    #[serde(rename = "clientIPs")]
    pub client_ips: BTreeMap<String, u32>,
    /// Container port that answered → answers, when the probe tallies it.
    pub server_ports: BTreeMap<String, u32>,
    pub status_codes: BTreeMap<String, u32>,
    pub errors: ProbeErrors,
    pub first_error: Option<String>,
    /// Per attempt: backend hostname, `http-<status>`, or the error kind.
    pub sequence: Vec<String>,
    /// The start of the first response body (an echo reply, as JSON).
    pub body_snippet: Option<String>,
}

impl HttpReport {
    /// The container port of the first answer, read from its echo reply.
    pub fn first_server_port(&self) -> Option<u16> {
        let echo: serde_json::Value = serde_json::from_str(self.body_snippet.as_deref()?).ok()?;
        echo.get("serverPort")?
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    }
}

/// Failed requests by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeErrors {
    pub refused: u32,
    pub timeout: u32,
    pub reset: u32,
    pub dns: u32,
    pub other: u32,
}

impl ProbeErrors {
    pub fn total(&self) -> u32 {
        self.refused + self.timeout + self.reset + self.dns + self.other
    }

    /// `(kind, count)` for every kind that happened.
    pub fn nonzero(&self) -> Vec<(&'static str, u32)> {
        [
            ("refused", self.refused),
            ("timeout", self.timeout),
            ("reset", self.reset),
            ("dns", self.dns),
            ("other", self.other),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// `svcconf-probe tcp HOST:PORT`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpReport {
    pub target: String,
    pub result: String,
}

/// `svcconf-probe dns NAME --type T`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsReport {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub rcode: String,
    pub answers: Vec<String>,
    pub error: Option<String>,
}

//! What a check expects to observe, kept apart from the traffic that
//! produces the observation (an expected refusal is just another expectation).

use std::fmt;

use serde::{Deserialize, Serialize};
pub use svcconf_probe::{ErrorKind, Outcome};

/// What a probe reports, and so what an assertion can judge: `http` (HTTP
/// and UDP, tallied alike), `tcp` (one connection), `dns` (one query),
/// `warnings` (the API server's answer to a dry-run update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Http,
    Tcp,
    Dns,
    Warnings,
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReportKind::Http => "http",
            ReportKind::Tcp => "tcp",
            ReportKind::Dns => "dns",
            ReportKind::Warnings => "warnings",
        })
    }
}

/// A variant's name as a case file spells it, from serde (no second list).
pub(crate) fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(serde_json::Value::Object(map)) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A DNS response code as the probe reports it; `TIMEOUT` (no answer in
/// time) and `ERROR` (no answer at all) are the probe's, not the wire's.
/// Typed, so a misspelt code in a case file fails at load with its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rcode {
    NoError,
    NxDomain,
    ServFail,
    Refused,
    FormErr,
    NotImp,
    Timeout,
    Error,
}

impl Rcode {
    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::ServFail => "SERVFAIL",
            Rcode::Refused => "REFUSED",
            Rcode::FormErr => "FORMERR",
            Rcode::NotImp => "NOTIMP",
            Rcode::Timeout => "TIMEOUT",
            Rcode::Error => "ERROR",
        }
    }
}

/// One expectation about one probe's observation. The verdict module judges
/// it; every variant says in one line what it expected and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Assertion {
    /// Every HTTP request was answered with status 200.
    AllOk,
    /// The backends that answered are exactly the `count` ready pods matching
    /// the label selector `pods` (counted when the probe ran).
    Backends { pods: String, count: usize },
    /// Every answer came from this container port (the echo's `serverPort`).
    ServerPort(u16),
    /// Every request failed, all with this error kind
    /// (`refused`, `timeout`, `reset`, `dns`, `other`).
    AllFailWith(ErrorKind),
    /// The TCP probe's result (`connected`, `refused`, `timeout`, ...).
    TcpResult(Outcome),
    /// The DNS response code (`NOERROR`, `NXDOMAIN`, ...).
    Rcode(Rcode),
    /// The DNS answers, as a set; entries may use the run-time placeholders
    /// (one that renders to a comma-separated list, like
    /// `${podIPs:app=web}`, stands for each of its items).
    Answers(Vec<String>),
    /// The SRV answers' `PORT TARGET` pairs, as a set (priority and weight
    /// are CoreDNS's business); entries render like `answers`.
    Srv(Vec<String>),
    /// Every request was answered (200), all by one and the same backend.
    OneBackend,
    /// Every request was answered (200), by at least this many distinct
    /// backends (an affinity that expired let the client move).
    MinBackends(usize),
    /// Every request was answered with this HTTP status (a health check's
    /// 503 included).
    Status(u16),
    /// Every request was answered, and no backend saw the client's own
    /// address (it was masqueraded to a node's).
    ClientIpNotClient,
    /// Every answer saw the client pod's own IP as the source.
    ClientIpIsClientPod,
    /// The Service's EndpointSlices shard its endpoints: at least
    /// `minSlices` slices (at most `maxSlices` when given), none holding more
    /// than `maxEndpoints`, their ready addresses together exactly the IPs of
    /// the Ready pods matching `pods`, each once; and the answers came from
    /// backends of every slice.
    EndpointSliceShards {
        service: String,
        pods: String,
        #[serde(rename = "minSlices")]
        min_slices: usize,
        #[serde(default, rename = "maxSlices", skip_serializing_if = "Option::is_none")]
        max_slices: Option<usize>,
        #[serde(default = "default_max_endpoints", rename = "maxEndpoints")]
        max_endpoints: usize,
    },
    /// Every request was answered, each by a pod matching this selector that
    /// runs on the client's own node (`trafficDistribution: PreferSameNode`).
    BackendsOnClientNode(String),
    /// Every request was answered, each by a pod matching this selector in
    /// the client node's zone (`topology.kubernetes.io/zone`;
    /// `trafficDistribution: PreferClose`). A node without a zone fails it.
    BackendsInClientZone(String),
    /// Every request was answered (200), each by the server of this
    /// hostname (a container outside the cluster, not a pod: what a load
    /// balancer with `ipMode: Proxy` stands for).
    AnsweredBy(String),
    /// One of the API server's warnings contains this text (a deprecation
    /// it announces on every write of the object).
    Warns(String),
}

impl Assertion {
    /// Its name in a case file (`allOk`, `backends`, ...).
    pub fn name(&self) -> String {
        serde_name(self)
    }

    /// The report it judges.
    pub fn judges(&self) -> ReportKind {
        match self {
            Assertion::TcpResult(_) => ReportKind::Tcp,
            Assertion::Rcode(_) | Assertion::Answers(_) | Assertion::Srv(_) => ReportKind::Dns,
            Assertion::Warns(_) => ReportKind::Warnings,
            Assertion::AllOk
            | Assertion::Backends { .. }
            | Assertion::ServerPort(_)
            | Assertion::AllFailWith(_)
            | Assertion::OneBackend
            | Assertion::MinBackends(_)
            | Assertion::Status(_)
            | Assertion::ClientIpNotClient
            | Assertion::ClientIpIsClientPod
            | Assertion::EndpointSliceShards { .. }
            | Assertion::BackendsOnClientNode(_)
            | Assertion::BackendsInClientZone(_)
            | Assertion::AnsweredBy(_) => ReportKind::Http,
        }
    }
}

/// The EndpointSlice controller's default `--max-endpoints-per-slice`.
fn default_max_endpoints() -> usize {
    100
}

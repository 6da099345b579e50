//! The pure vocabulary of svcconf: cases, expectations, observations and run
//! events. Nothing here touches a cluster, a file or the clock.

mod audit;
mod case;
mod dataplane;
mod deadlines;
mod event;
mod expectation;
mod family;
mod mode;
mod observation;

pub use audit::{
    audit, Audit, AuditCheck, AuditFacts, CheckOutcome, EndpointsFacts, Fact, FailOn, Finding,
    ProxyConfig, ServiceFacts, Severity, SliceFacts, CHECKS,
};
pub use case::{
    before_release, Action, Addon, AddressPool, Case, CaseError, Catalog, Check, ClientPlacement,
    ClientPods, ClusterSize, Count, FamilyRank, ModeSwitch, ObjectPatch, ObjectRef, PodSecurity,
    Probe, Readiness, RefusalSabotage, RefusedBefore, Sabotage, SliceShare, Step, CLIENT_NAME,
    DEFAULT_MAX_ENDPOINTS_PER_SLICE, REQUEST_TIMEOUT_MS,
};
pub use dataplane::{unprogrammed, Dataplane, NodeDataplane, ProxyHealth, ServiceProxy};
pub use deadlines::{
    parse_scale, request_timeout_ms, scale, scaled, set_scale, Deadlines, SCALE_ENV,
};
pub use event::{CaseKey, CaseOutcome, CaseResult, ClusterInfo, Event, Variant};
pub use expectation::{Assertion, ErrorKind, Outcome, Rcode, ReportKind};
pub use family::{bracket_host, host_prefix, IpFamilies, IpFamily, UnknownIpFamily};
pub use mode::{ProxyMode, UnknownProxyMode};
pub use observation::{
    DnsReport, ErrorCounts, HttpReport, Observation, ProbeReport, TcpReport, WarningsReport,
};

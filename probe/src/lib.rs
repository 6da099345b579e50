//! The svcconf probe: one binary that is both the backend (`serve`, an HTTP and UDP echo
//! that says who served and who asked) and the client (`http`, `tcp`, `udp`, `dns`) of
//! every Service check, printing one JSON object per run.
//!
//! The library holds the same clients and the report types, so the harness can parse
//! what the in-pod probe printed and run the same checks from the host for external
//! traffic (NodePort, LoadBalancer, externalIPs).
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use svcconf_probe::{http_probe, tcp_probe, HttpOptions, HttpReport, Outcome};
//!
//! let mut opts = HttpOptions::new("http://172.18.0.3:30080/");
//! opts.count = 20;
//! let report = http_probe(&opts).await;
//! println!("{} ok, backends {:?}", report.ok, report.backends);
//!
//! // What an in-pod `svcconf-probe http ...` printed parses back the same way.
//! let json = serde_json::to_string(&report).unwrap();
//! let back: HttpReport = serde_json::from_str(&json).unwrap();
//! assert_eq!(back.ok, report.ok);
//!
//! let tcp = tcp_probe("172.18.0.3:30081", Duration::from_secs(2), None).await;
//! assert_eq!(tcp.result, Outcome::Connected);
//! # }
//! ```

mod client;
mod dns;
mod report;
mod serve;

pub use client::{
    http_probe, parse_host_port, parse_http_url, tcp_probe, udp_probe, HttpOptions, HttpTarget,
    UdpOptions,
};
pub use dns::{
    dns_probe, dns_probe_with, search_as, search_candidates, system_conf, DnsOptions, DnsType,
};
pub use report::{
    classify_io, percentile, DnsReport, EchoReply, ErrorCounts, ErrorKind, HttpReport, HttpTally,
    LatencyMs, Outcome, TcpReport,
};
pub use serve::{run_http, run_udp, serve, ServeOptions, ServeState};

/// Errors of this crate. Probe failures are not errors: they are results in a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not `http://host[:port][/path]`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    /// The target is not `HOST:PORT`.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        target: String,
        reason: &'static str,
    },
    /// A DNS record type the probe does not query.
    #[error("unsupported DNS type {0:?} (use A, AAAA, SRV, PTR, CNAME or TXT)")]
    InvalidDnsType(String),
    /// `serve` could not bind one of its ports.
    #[error("cannot bind {proto} port {port}")]
    Bind {
        proto: &'static str,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// An echo socket failed while serving.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
}

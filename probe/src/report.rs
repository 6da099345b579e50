//! The JSON the probe prints, and the pure logic that fills it.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What `serve` answers on every HTTP path and every UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EchoReply {
    pub hostname: String,
    #[serde(rename = "podIP")]
    pub pod_ip: String,
    #[serde(rename = "clientIP")]
    pub client_ip: String,
    pub client_port: u16,
    pub server_port: u16,
    /// The request target (`/a?b`), or `"udp"` for a datagram.
    pub path: String,
}

/// Why a request or connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    Refused,
    Timeout,
    Reset,
    Dns,
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Dns => "dns",
            Self::Other => "other",
        }
    }
}

/// Maps an I/O error to the kind the harness reasons about.
pub fn classify_io(err: &io::Error) -> ErrorKind {
    use io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused => ErrorKind::Refused,
        K::TimedOut | K::WouldBlock => ErrorKind::Timeout,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ErrorKind::Reset
        }
        _ => ErrorKind::Other,
    }
}

/// Result of a `tcp` or `udp` probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Connected,
    Answered,
    Refused,
    Timeout,
    Reset,
    Dns,
    /// Also what a report without a result reads as.
    #[default]
    Other,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Answered => "answered",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Dns => "dns",
            Self::Other => "other",
        }
    }
}

impl From<ErrorKind> for Outcome {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Refused => Self::Refused,
            ErrorKind::Timeout => Self::Timeout,
            ErrorKind::Reset => Self::Reset,
            ErrorKind::Dns => Self::Dns,
            ErrorKind::Other => Self::Other,
        }
    }
}

/// Failed attempts by kind; every kind is always present so a missing key never reads as 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorCounts {
    pub refused: u32,
    pub timeout: u32,
    pub reset: u32,
    pub dns: u32,
    pub other: u32,
}

impl ErrorCounts {
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

/// Latencies of the attempts that got an HTTP response, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub min: f64,
    pub p50: f64,
    pub max: f64,
}

/// Nearest-rank percentile of `sorted` (ascending); `None` when empty.
pub fn percentile(sorted: &[f64], pct: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(crate) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Output of `svcconf-probe http`, and of `udp` (a datagram is a request, an echo
/// reply its answer; `url` is `udp://<target>`). Read leniently (the harness reads it
/// back): a field that is not there is empty, and an empty report fails
/// every expectation instead of passing it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpReport {
    pub url: String,
    pub count: u32,
    /// Attempts answered with a 2xx status.
    pub ok: u32,
    /// Serving pod hostname -> responses, from echo bodies only.
    pub backends: BTreeMap<String, u32>,
    /// Client IP as the server saw it -> responses, from echo bodies only.
    #[serde(rename = "clientIPs")]
    pub client_ips: BTreeMap<String, u32>,
    /// Container port that answered -> responses, from echo bodies only.
    pub server_ports: BTreeMap<String, u32>,
    pub status_codes: BTreeMap<String, u32>,
    pub errors: ErrorCounts,
    /// `null` when no attempt got a response.
    pub latency_ms: Option<LatencyMs>,
    /// Per attempt, in order: the backend hostname, `http-<status>` for a response that
    /// is not an echo, or the error kind.
    pub sequence: Vec<String>,
    pub first_error: Option<String>,
    /// First 300 characters of the first response body.
    pub body_snippet: Option<String>,
}

impl HttpReport {
    /// The container port of the first answer, read from its echo reply.
    pub fn first_server_port(&self) -> Option<u16> {
        let echo: EchoReply = serde_json::from_str(self.body_snippet.as_deref()?).ok()?;
        Some(echo.server_port)
    }
}

/// Accumulates attempts into an [`HttpReport`]; no I/O, so the counting is unit-tested.
#[derive(Debug, Default)]
pub struct HttpTally {
    report: HttpReport,
    latencies: Vec<f64>,
}

impl HttpTally {
    pub fn new(url: &str) -> Self {
        let mut tally = Self::default();
        tally.report.url = url.to_string();
        tally
    }

    pub fn response(&mut self, status: u16, body: &[u8], latency: Duration) {
        let r = &mut self.report;
        r.count += 1;
        if (200..300).contains(&status) {
            r.ok += 1;
        }
        *r.status_codes.entry(status.to_string()).or_default() += 1;
        self.answer(body, || format!("http-{status}"), latency);
    }

    /// One UDP reply: answered, and tallied like an HTTP echo when it is one.
    pub fn datagram(&mut self, reply: &[u8], latency: Duration) {
        let r = &mut self.report;
        r.count += 1;
        r.ok += 1;
        self.answer(reply, || "udp-reply".to_string(), latency);
    }

    /// What every answer adds: the first snippet, the echo's backend,
    /// client IP and port (or `not_echo` in the sequence), the latency.
    fn answer(&mut self, body: &[u8], not_echo: impl FnOnce() -> String, latency: Duration) {
        let r = &mut self.report;
        if r.body_snippet.is_none() {
            r.body_snippet = Some(String::from_utf8_lossy(body).chars().take(300).collect());
        }
        match serde_json::from_slice::<EchoReply>(body) {
            Ok(echo) => {
                *r.backends.entry(echo.hostname.clone()).or_default() += 1;
                *r.client_ips.entry(echo.client_ip).or_default() += 1;
                *r.server_ports
                    .entry(echo.server_port.to_string())
                    .or_default() += 1;
                r.sequence.push(echo.hostname);
            }
            Err(_) => r.sequence.push(not_echo()),
        }
        self.latencies.push(millis(latency));
    }

    pub fn error(&mut self, kind: ErrorKind, message: &str) {
        let r = &mut self.report;
        r.count += 1;
        let e = &mut r.errors;
        *match kind {
            ErrorKind::Refused => &mut e.refused,
            ErrorKind::Timeout => &mut e.timeout,
            ErrorKind::Reset => &mut e.reset,
            ErrorKind::Dns => &mut e.dns,
            ErrorKind::Other => &mut e.other,
        } += 1;
        r.sequence.push(kind.as_str().to_string());
        if r.first_error.is_none() {
            r.first_error = Some(format!("{}: {message}", kind.as_str()));
        }
    }

    pub fn finish(mut self) -> HttpReport {
        self.latencies.sort_by(f64::total_cmp);
        let l = &self.latencies;
        self.report.latency_ms = percentile(l, 50.0).map(|p50| LatencyMs {
            min: l[0],
            p50,
            max: l[l.len() - 1],
        });
        self.report
    }
}

/// Output of `svcconf-probe tcp`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TcpReport {
    pub target: String,
    pub result: Outcome,
    pub error: Option<String>,
    pub latency_ms: f64,
}

/// Output of `svcconf-probe dns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsReport {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ... or `TIMEOUT` (no answer in time)
    /// or `ERROR` (no query could be made, e.g. no resolv.conf).
    pub rcode: String,
    /// Sorted; only records of the asked type.
    pub answers: Vec<String>,
    pub error: Option<String>,
    /// The absolute names queried, in order (search list and ndots applied).
    #[serde(default)]
    pub queried: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(host: &str, ip: &str) -> Vec<u8> {
        let e = EchoReply {
            hostname: host.into(),
            pod_ip: "10.0.0.9".into(),
            client_ip: ip.into(),
            client_port: 40000,
            server_port: 8080,
            path: "/".into(),
        };
        serde_json::to_vec(&e).unwrap()
    }

    #[test]
    fn echo_field_names_are_the_contract() {
        let v: serde_json::Value = serde_json::from_slice(&echo("a", "10.1.1.1")).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let want = [
            "clientIP",
            "clientPort",
            "hostname",
            "path",
            "podIP",
            "serverPort",
        ];
        assert_eq!(keys, want);
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 100.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.0), Some(1.0));
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let k = |kind| classify_io(&io::Error::from(kind));
        assert_eq!(k(io::ErrorKind::ConnectionRefused), ErrorKind::Refused);
        assert_eq!(k(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(k(io::ErrorKind::BrokenPipe), ErrorKind::Reset);
        assert_eq!(k(io::ErrorKind::UnexpectedEof), ErrorKind::Reset);
        assert_eq!(k(io::ErrorKind::TimedOut), ErrorKind::Timeout);
        assert_eq!(k(io::ErrorKind::PermissionDenied), ErrorKind::Other);
    }

    #[test]
    fn tally_counts_backends_errors_and_sequence() {
        let mut t = HttpTally::new("http://svc/");
        let ms = Duration::from_millis;
        t.response(200, &echo("web-a", "10.0.0.1"), ms(3));
        t.error(ErrorKind::Refused, "connection refused");
        t.response(200, &echo("web-b", "10.0.0.1"), ms(1));
        t.response(200, &echo("web-a", "10.0.0.2"), ms(2));
        t.response(503, b"<html>down</html>", ms(9));
        t.error(ErrorKind::Timeout, "no response in 2000 ms");
        let r = t.finish();
        assert_eq!((r.count, r.ok), (6, 3));
        assert_eq!(r.backends["web-a"], 2);
        assert_eq!(r.backends["web-b"], 1);
        assert_eq!(r.client_ips["10.0.0.1"], 2);
        assert_eq!(r.server_ports.values().sum::<u32>(), 3);
        assert_eq!(r.status_codes["200"], 3);
        assert_eq!(r.status_codes["503"], 1);
        assert_eq!(
            (r.errors.refused, r.errors.timeout, r.errors.total()),
            (1, 1, 2)
        );
        assert_eq!(
            r.sequence,
            ["web-a", "refused", "web-b", "web-a", "http-503", "timeout"]
        );
        assert_eq!(
            r.first_error.as_deref(),
            Some("refused: connection refused")
        );
        assert_eq!(
            r.latency_ms,
            Some(LatencyMs {
                min: 1.0,
                p50: 2.0,
                max: 9.0
            })
        );
        assert!(r
            .body_snippet
            .unwrap()
            .starts_with("{\"hostname\":\"web-a\""));
    }

    #[test]
    fn report_json_round_trips_with_contract_names() {
        let mut t = HttpTally::new("http://x/");
        t.error(ErrorKind::Dns, "NXDOMAIN");
        let r = t.finish();
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "clientIPs",
            "statusCodes",
            "latencyMs",
            "firstError",
            "bodySnippet",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["errors"]["dns"], 1);
        assert_eq!(v["latencyMs"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<HttpReport>(v).unwrap(), r);
    }
}

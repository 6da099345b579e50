//! DNS queries as the pod's resolver makes them. The search list is walked here rather
//! than inside hickory so that the rcode of every candidate is seen: a Service name that
//! does not exist must read NXDOMAIN even when the last, bare-name query goes upstream
//! and fails differently there.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::system_conf::read_system_conf;
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

use crate::{DnsReport, Error};

/// Record types the probe queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsType {
    A,
    Aaaa,
    Srv,
    Ptr,
    Cname,
    Txt,
}

impl DnsType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
            Self::Srv => "SRV",
            Self::Ptr => "PTR",
            Self::Cname => "CNAME",
            Self::Txt => "TXT",
        }
    }

    fn record_type(self) -> RecordType {
        match self {
            Self::A => RecordType::A,
            Self::Aaaa => RecordType::AAAA,
            Self::Srv => RecordType::SRV,
            Self::Ptr => RecordType::PTR,
            Self::Cname => RecordType::CNAME,
            Self::Txt => RecordType::TXT,
        }
    }
}

impl FromStr for DnsType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let all = [
            Self::A,
            Self::Aaaa,
            Self::Srv,
            Self::Ptr,
            Self::Cname,
            Self::Txt,
        ];
        all.into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidDnsType(s.to_string()))
    }
}

/// What `dns_probe` asks.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// A name, or for PTR also an IP address.
    pub name: String,
    pub record_type: DnsType,
    /// Bounds the whole lookup, all search candidates included.
    pub timeout: Duration,
    /// Query `name` as an absolute name, skipping the search list.
    pub no_search: bool,
    /// Walk the search list a pod of this namespace has (see [`system_conf`]).
    pub namespace: Option<String>,
}

/// The search list of a pod in `namespace`, from the list of a pod in another: kubelet
/// writes `<namespace>.svc.<cluster domain>` into a pod's resolv.conf, so a client pod
/// that checks another namespace's Services swaps that one label and then sends
/// exactly the queries the other namespace's own pods send.
pub fn search_as(search: &[String], namespace: &str) -> Vec<String> {
    search
        .iter()
        .map(|domain| match domain.split_once('.') {
            Some((_, rest)) if rest.starts_with("svc.") => format!("{namespace}.{rest}"),
            _ => domain.clone(),
        })
        .collect()
}

/// /etc/resolv.conf as hickory reads it, with the search list of a pod in `namespace`
/// when one is given ([`search_as`]).
pub fn system_conf(namespace: Option<&str>) -> Result<(ResolverConfig, ResolverOpts), String> {
    let (config, options) = read_system_conf().map_err(|e| format!("resolver config: {e}"))?;
    let Some(namespace) = namespace else {
        return Ok((config, options));
    };
    let (domain, search, servers) = config.into_parts();
    let names = |list: Vec<String>| -> Result<Vec<Name>, String> {
        list.iter()
            .map(|d| Name::from_str(d).map_err(|e| format!("search domain {d}: {e}")))
            .collect()
    };
    let search = names(search_as(
        &search.iter().map(Name::to_string).collect::<Vec<_>>(),
        namespace,
    ))?;
    let domain = names(search_as(
        &domain.iter().map(Name::to_string).collect::<Vec<_>>(),
        namespace,
    ))?
    .pop();
    Ok((ResolverConfig::from_parts(domain, search, servers), options))
}

/// The absolute names a stub resolver tries for `name`, in order (resolv.conf rules:
/// a name with a trailing dot is tried alone; one with at least `ndots` dots is tried
/// as-is first, otherwise last).
pub fn search_candidates(name: &str, search: &[String], ndots: usize) -> Vec<String> {
    if name.ends_with('.') {
        return vec![name.to_string()];
    }
    let absolute = format!("{name}.");
    let searched = search
        .iter()
        .map(|s| format!("{name}.{}.", s.trim_end_matches('.')));
    let mut out: Vec<String> = match name.matches('.').count() >= ndots {
        true => std::iter::once(absolute).chain(searched).collect(),
        false => searched.chain(std::iter::once(absolute)).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// Queries `opts.name` through /etc/resolv.conf.
pub async fn dns_probe(opts: &DnsOptions) -> DnsReport {
    match system_conf(opts.namespace.as_deref()) {
        Ok((config, options)) => dns_probe_with(config, options, opts).await,
        Err(e) => report(opts, "ERROR", vec![], Some(e), vec![]),
    }
}

/// Like [`dns_probe`] with an explicit resolver configuration (tests, fake servers).
pub async fn dns_probe_with(
    config: ResolverConfig,
    mut options: ResolverOpts,
    opts: &DnsOptions,
) -> DnsReport {
    let rtype = opts.record_type.record_type();
    let names = match (opts.record_type, opts.name.parse::<IpAddr>()) {
        (DnsType::Ptr, Ok(ip)) => vec![Name::from(ip).to_string()],
        _ if opts.no_search => vec![format!("{}.", opts.name.trim_end_matches('.'))],
        _ => {
            let mut search: Vec<String> = config.search().iter().map(|n| n.to_string()).collect();
            if search.is_empty() {
                search.extend(config.domain().map(|d| d.to_string()));
            }
            search_candidates(&opts.name, &search, options.ndots)
        }
    };
    // Fresh answers every run; one per-query timeout within the overall budget.
    options.cache_size = 0;
    options.timeout = opts.timeout;
    let resolver = TokioResolver::builder_with_config(config, Default::default())
        .with_options(options)
        .build();
    let resolver = match resolver {
        Ok(r) => r,
        Err(e) => {
            return report(
                opts,
                "ERROR",
                vec![],
                Some(format!("resolver: {e}")),
                vec![],
            )
        }
    };
    let deadline = Instant::now() + opts.timeout;
    let mut queried = Vec::new();
    // The most telling failure so far: (rank, rcode, message).
    let mut best: Option<(u8, String, String)> = None;
    for fqdn in names {
        queried.push(fqdn.clone());
        let lookup = tokio::time::timeout_at(deadline, resolver.lookup(fqdn.as_str(), rtype));
        let failure = match lookup.await {
            // Out of time: what earlier candidates said still stands.
            Err(_) if best.is_some() => break,
            Err(_) => {
                let msg = format!("no answer within {} ms", opts.timeout.as_millis());
                return report(opts, "TIMEOUT", vec![], Some(msg), queried);
            }
            Ok(Ok(lookup)) => {
                let mut answers: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.to_string())
                    .collect();
                if !answers.is_empty() {
                    answers.sort();
                    return report(opts, "NOERROR", answers, None, queried);
                }
                (
                    "NOERROR".to_string(),
                    format!("no {rtype} records for {fqdn}"),
                )
            }
            Ok(Err(e)) => (failure_rcode(&e), format!("{fqdn}: {e}")),
        };
        let rank = rank(&failure.0);
        if best.as_ref().is_none_or(|b| rank < b.0) {
            best = Some((rank, failure.0, failure.1));
        }
    }
    match best {
        // NOERROR with no records of the type (NODATA) is an answer, not an error.
        Some((_, rcode, _)) if rcode == "NOERROR" => report(opts, &rcode, vec![], None, queried),
        Some((_, rcode, msg)) => report(opts, &rcode, vec![], Some(msg), queried),
        None => report(
            opts,
            "ERROR",
            vec![],
            Some("no name to query".into()),
            queried,
        ),
    }
}

/// Lower is more definitive: a name that exists beats one that does not, which beats
/// a server failure, which beats not getting an answer at all.
fn rank(rcode: &str) -> u8 {
    match rcode {
        "NOERROR" => 0,
        "NXDOMAIN" => 1,
        "TIMEOUT" => 3,
        "ERROR" => 4,
        _ => 2,
    }
}

fn failure_rcode(err: &NetError) -> String {
    match err {
        NetError::Dns(DnsError::NoRecordsFound(nr)) => rcode_name(nr.response_code),
        NetError::Dns(DnsError::ResponseCode(code)) => rcode_name(*code),
        NetError::Timeout => "TIMEOUT".into(),
        e if e.to_string().contains("timed out") => "TIMEOUT".into(),
        _ => "ERROR".into(),
    }
}

fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn report(
    opts: &DnsOptions,
    rcode: &str,
    answers: Vec<String>,
    error: Option<String>,
    queried: Vec<String>,
) -> DnsReport {
    DnsReport {
        name: opts.name.clone(),
        record_type: opts.record_type.as_str().to_string(),
        rcode: rcode.to_string(),
        answers,
        error,
        queried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::config::NameServerConfig;
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, CNAME, SRV};
    use hickory_resolver::proto::rr::{RData, Record};
    use tokio::net::UdpSocket;

    const SEARCH: [&str; 3] = ["ns.svc.cluster.local", "svc.cluster.local", "cluster.local"];

    #[test]
    fn search_as_swaps_only_the_namespace_domain() {
        let pod = [
            "clients-1.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
            "corp.",
        ];
        let pod: Vec<String> = pod.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            search_as(&pod, "web-7"),
            [
                "web-7.svc.cluster.local.",
                "svc.cluster.local.",
                "cluster.local.",
                "corp."
            ]
        );
    }

    #[test]
    fn candidates_follow_ndots() {
        let s: Vec<String> = SEARCH.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            search_candidates("web", &s, 5),
            [
                "web.ns.svc.cluster.local.",
                "web.svc.cluster.local.",
                "web.cluster.local.",
                "web."
            ]
        );
        assert_eq!(search_candidates("a.b", &s, 1)[0], "a.b.");
        assert_eq!(
            search_candidates("web.ns.svc.cluster.local.", &s, 5),
            ["web.ns.svc.cluster.local."]
        );
        assert_eq!(search_candidates("x", &[], 1), ["x."]);
        assert!("txt".parse::<DnsType>().is_ok() && "MX".parse::<DnsType>().is_err());
    }

    /// A tiny authoritative server for a fake cluster zone; `silent` never answers.
    async fn fake_dns(silent: bool) -> std::net::SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if silent {
                    continue;
                }
                let mut resp = Message::response(req.metadata.id, OpCode::Query);
                let q = req.queries[0].clone();
                let name = q.name().clone();
                let data: Vec<RData> = match (name.to_string().as_str(), q.query_type()) {
                    ("web.ns.svc.cluster.local.", RecordType::A) => {
                        vec![RData::A(A::new(10, 0, 0, 2)), RData::A(A::new(10, 0, 0, 1))]
                    }
                    ("web.ns.svc.cluster.local.", _) => vec![],
                    ("ext.ns.svc.cluster.local.", RecordType::CNAME) => {
                        vec![RData::CNAME(CNAME(
                            Name::from_ascii("example.com.").unwrap(),
                        ))]
                    }
                    ("_http._tcp.web.ns.svc.cluster.local.", RecordType::SRV) => {
                        let target = Name::from_ascii("web.ns.svc.cluster.local.").unwrap();
                        vec![RData::SRV(SRV::new(0, 100, 80, target))]
                    }
                    _ => {
                        resp.metadata.response_code = ResponseCode::NXDomain;
                        vec![]
                    }
                };
                resp.add_query(q);
                for d in data {
                    resp.add_answer(Record::from_rdata(name.clone(), 5, d));
                }
                let _ = sock.send_to(&resp.to_vec().unwrap(), peer).await;
            }
        });
        addr
    }

    async fn ask(server: std::net::SocketAddr, name: &str, t: DnsType, ms: u64) -> DnsReport {
        let mut udp = hickory_resolver::config::ConnectionConfig::udp();
        udp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp]);
        let search = SEARCH
            .iter()
            .map(|s| Name::from_ascii(s).unwrap())
            .collect();
        let config = ResolverConfig::from_parts(None, search, vec![ns]);
        let mut options = ResolverOpts::default();
        options.ndots = 5;
        options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let opts = DnsOptions {
            name: name.into(),
            record_type: t,
            timeout: Duration::from_millis(ms),
            no_search: false,
            namespace: None,
        };
        dns_probe_with(config, options, &opts).await
    }

    #[tokio::test]
    async fn answers_nxdomain_and_timeout() {
        let server = fake_dns(false).await;
        let r = ask(server, "web", DnsType::A, 2000).await;
        assert_eq!((r.rcode.as_str(), r.error.as_deref()), ("NOERROR", None));
        assert_eq!(r.answers, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(r.queried, ["web.ns.svc.cluster.local."]);

        let r = ask(server, "ext", DnsType::Cname, 2000).await;
        assert_eq!(r.answers, ["example.com."]);
        let r = ask(server, "_http._tcp.web", DnsType::Srv, 2000).await;
        assert_eq!(r.answers, ["0 100 80 web.ns.svc.cluster.local."]);

        let r = ask(server, "nope", DnsType::A, 2000).await;
        assert_eq!(r.rcode, "NXDOMAIN");
        assert!(r.answers.is_empty() && r.error.is_some());
        assert_eq!(r.queried.len(), 4);

        let r = ask(server, "web", DnsType::Txt, 2000).await;
        assert_eq!((r.rcode.as_str(), r.answers.len()), ("NOERROR", 0));

        let silent = fake_dns(true).await;
        let r = ask(silent, "web", DnsType::A, 300).await;
        assert_eq!(r.rcode, "TIMEOUT");
        assert!(r.answers.is_empty() && r.error.is_some());
    }
}

//! HTTP, TCP and UDP clients. HTTP is a few lines over a `TcpStream` on purpose: one
//! request per connection is then evident, and the binary stays small.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::TokioResolver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

use crate::dns::system_conf;
use crate::report::{classify_io, millis, ErrorKind, HttpReport, HttpTally, Outcome};
use crate::{Error, TcpReport};

/// Bodies past this are dropped unread: the probe needs a snippet and an echo, not pages.
const MAX_RESPONSE: usize = 1 << 20;

type Failure = (ErrorKind, String);

/// Parsed `http://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    /// Path and query, always starting with `/`.
    pub path: String,
}

impl HttpTarget {
    /// The Host header a browser would send for this URL.
    pub fn host_header(&self) -> String {
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        match self.port {
            80 => host,
            port => format!("{host}:{port}"),
        }
    }
}

/// Parses a plain-HTTP URL; https is refused since the probe speaks no TLS.
pub fn parse_http_url(url: &str) -> Result<HttpTarget, Error> {
    let bad = |reason| Error::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let rest = match url.get(..7) {
        Some(s) if s.eq_ignore_ascii_case("http://") => &url[7..],
        _ if url.to_ascii_lowercase().starts_with("https://") => {
            return Err(bad("https is not supported"))
        }
        _ => return Err(bad("must start with http://")),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("user info is not supported"));
    }
    let (host, port) = parse_host_port(authority, Some(80)).map_err(|_| bad("bad host or port"))?;
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };
    Ok(HttpTarget { host, port, path })
}

/// Splits `host:port`, `[v6]:port`, or a bare host when `default_port` is given.
pub fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<(String, u16), Error> {
    let bad = |reason| Error::InvalidTarget {
        target: s.to_string(),
        reason,
    };
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or_else(|| bad("missing ]"))?;
        (host, rest.strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(bad("IPv6 needs [brackets]")),
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match (port, default_port) {
        (Some(p), _) => p.parse().map_err(|_| bad("bad port"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(bad("missing :PORT")),
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    Ok((host.to_string(), port))
}

/// What `http_probe` does.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub url: String,
    pub count: u32,
    /// Bounds each attempt as a whole: resolve, connect, send, read.
    pub timeout: Duration,
    /// Pause between attempts.
    pub interval: Duration,
    /// Overrides the Host header (virtual hosts, Ingress-like backends).
    pub host_header: Option<String>,
    /// Resolve names as a pod of this namespace does (`dns::search_as`).
    pub namespace: Option<String>,
}

impl HttpOptions {
    /// One attempt, 2 s timeout, no pause.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            count: 1,
            timeout: Duration::from_secs(2),
            interval: Duration::ZERO,
            host_header: None,
            namespace: None,
        }
    }
}

/// Resolves host names through /etc/resolv.conf (search, ndots) without NSS, which a
/// static binary cannot load. No cache, so every attempt asks DNS like a fresh client
/// (and sees CoreDNS's record rotation for headless Services).
struct Resolver(Option<Result<TokioResolver, String>>);

impl Resolver {
    fn for_host(host: &str, namespace: Option<&str>) -> Self {
        if host.parse::<IpAddr>().is_ok() {
            return Self(None);
        }
        let built = system_conf(namespace).and_then(|(config, mut options)| {
            options.cache_size = 0;
            // A first: Services are IPv4 unless the cluster says otherwise.
            options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
            TokioResolver::builder_with_config(config, Default::default())
                .with_options(options)
                .build()
                .map_err(|e| format!("resolver config: {e}"))
        });
        Self(Some(built))
    }

    async fn addr(&self, host: &str, port: u16) -> Result<SocketAddr, Failure> {
        let resolver = match &self.0 {
            None => return Ok(SocketAddr::new(host.parse().unwrap(), port)),
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err((ErrorKind::Dns, e.clone())),
        };
        let found = resolver.lookup_ip(host).await;
        let ip = found.map_err(|e| (ErrorKind::Dns, format!("{host}: {e}")))?;
        ip.iter()
            .next()
            .map(|ip| SocketAddr::new(ip, port))
            .ok_or_else(|| (ErrorKind::Dns, format!("{host}: no addresses")))
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| (classify_io(&e), format!("connect {addr}: {e}")))
}

/// Runs `opts.count` sequential GETs, each on a new connection with `Connection: close`.
/// An invalid URL yields a report whose every attempt is an `other` error.
pub async fn http_probe(opts: &HttpOptions) -> HttpReport {
    let mut tally = HttpTally::new(&opts.url);
    let target = match parse_http_url(&opts.url) {
        Ok(t) => t,
        Err(e) => {
            (0..opts.count).for_each(|_| tally.error(ErrorKind::Other, &e.to_string()));
            return tally.finish();
        }
    };
    let resolver = Resolver::for_host(&target.host, opts.namespace.as_deref());
    let host = opts.host_header.clone().unwrap_or(target.host_header());
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: svcconf-probe\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        target.path
    );
    for i in 0..opts.count {
        if i > 0 && !opts.interval.is_zero() {
            tokio::time::sleep(opts.interval).await;
        }
        let start = Instant::now();
        let attempt = async {
            let addr = resolver.addr(&target.host, target.port).await?;
            let stream = connect(addr).await?;
            exchange(stream, request.as_bytes()).await
        };
        match timeout(opts.timeout, attempt).await {
            Ok(Ok((status, body))) => tally.response(status, &body, start.elapsed()),
            Ok(Err((kind, msg))) => tally.error(kind, &msg),
            Err(_) => tally.error(ErrorKind::Timeout, &timeout_msg(opts.timeout)),
        }
    }
    tally.finish()
}

fn timeout_msg(t: Duration) -> String {
    format!("no answer within {} ms", t.as_millis())
}

/// Sends the request and reads until EOF (or the announced body length).
async fn exchange(mut stream: TcpStream, request: &[u8]) -> Result<(u16, Vec<u8>), Failure> {
    let io_err = |what: &str, e: std::io::Error| (classify_io(&e), format!("{what}: {e}"));
    stream
        .write_all(request)
        .await
        .map_err(|e| io_err("send", e))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| io_err("read", e))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= MAX_RESPONSE || body_complete(&buf) {
            break;
        }
    }
    if buf.is_empty() {
        return Err((
            ErrorKind::Reset,
            "connection closed without a response".into(),
        ));
    }
    parse_response(&buf).ok_or((ErrorKind::Other, "malformed HTTP response".into()))
}

fn split_head(raw: &[u8]) -> Option<(&str, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((std::str::from_utf8(&raw[..end]).ok()?, &raw[end + 4..]))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// True once the whole body is in: a server ignoring `Connection: close` must not turn
/// a good answer into a timeout.
fn body_complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split_head(raw) else {
        return false;
    };
    if header(head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    header(head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

/// Status code and decoded body of a complete response.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let (head, body) = split_head(raw)?;
    let mut status_line = head.lines().next()?.split_whitespace();
    if !status_line.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = status_line.next()?.parse().ok()?;
    let chunked = header(head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = match chunked {
        true => dechunk(body),
        false => match header(head, "content-length").and_then(|v| v.parse().ok()) {
            Some(len) if len < body.len() => body[..len].to_vec(),
            _ => body.to_vec(),
        },
    };
    Some((status, body))
}

/// Decodes chunked transfer coding; a truncated stream keeps what arrived.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&s| s > 0) else {
            break;
        };
        let data = &rest[eol + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        rest = data.get(take + 2..).unwrap_or_default();
    }
    out
}

/// Opens one TCP connection and closes it; names resolved as a pod of `namespace`
/// does when one is given.
pub async fn tcp_probe(target: &str, limit: Duration, namespace: Option<&str>) -> TcpReport {
    let start = Instant::now();
    let attempt = async {
        let (host, port) =
            parse_host_port(target, None).map_err(|e| (ErrorKind::Other, e.to_string()))?;
        let addr = Resolver::for_host(&host, namespace)
            .addr(&host, port)
            .await?;
        connect(addr).await.map(drop)
    };
    let outcome = timeout(limit, attempt).await;
    let (result, error) = match outcome {
        Ok(Ok(())) => (Outcome::Connected, None),
        Ok(Err((kind, msg))) => (kind.into(), Some(msg)),
        Err(_) => (Outcome::Timeout, Some(timeout_msg(limit))),
    };
    TcpReport {
        target: target.to_string(),
        result,
        error,
        latency_ms: millis(start.elapsed()),
    }
}

/// What `udp` sends: `count` datagrams to `target`, each waiting `timeout` for one
/// reply, all from one socket (so one 5-tuple: a conntrack entry left by an earlier
/// run from the same `source_port` is what the later datagrams meet).
#[derive(Debug, Clone)]
pub struct UdpOptions {
    pub target: String,
    pub count: u32,
    pub timeout: Duration,
    pub interval: Duration,
    /// The local port to send from; `None` lets the kernel pick one.
    pub source_port: Option<u16>,
    pub payload: Vec<u8>,
    /// Resolve names as a pod of this namespace does.
    pub namespace: Option<String>,
}

/// Sends the datagrams and tallies the echo replies as a request tally (`url` is
/// `udp://<target>`; a reply counts as answered). A connected socket is used so that an
/// ICMP port-unreachable surfaces as `refused`.
pub async fn udp_probe(opts: &UdpOptions) -> HttpReport {
    let mut tally = HttpTally::new(&format!("udp://{}", opts.target));
    let sock = match udp_socket(opts).await {
        Ok(sock) => sock,
        Err((kind, msg)) => {
            (0..opts.count).for_each(|_| tally.error(kind, &msg));
            return tally.finish();
        }
    };
    let mut buf = vec![0u8; 65536];
    for i in 0..opts.count {
        if i > 0 && !opts.interval.is_zero() {
            tokio::time::sleep(opts.interval).await;
        }
        let start = Instant::now();
        let exchange = async {
            let io_err = |e: std::io::Error| (classify_io(&e), e.to_string());
            sock.send(&opts.payload).await.map_err(io_err)?;
            sock.recv(&mut buf).await.map_err(io_err)
        };
        match timeout(opts.timeout, exchange).await {
            Ok(Ok(n)) => tally.datagram(&buf[..n], start.elapsed()),
            Ok(Err((kind, msg))) => tally.error(kind, &msg),
            Err(_) => tally.error(ErrorKind::Timeout, &timeout_msg(opts.timeout)),
        }
    }
    tally.finish()
}

async fn udp_socket(opts: &UdpOptions) -> Result<UdpSocket, Failure> {
    let (host, port) =
        parse_host_port(&opts.target, None).map_err(|e| (ErrorKind::Other, e.to_string()))?;
    let source_port = opts.source_port;
    let addr = Resolver::for_host(&host, opts.namespace.as_deref())
        .addr(&host, port)
        .await?;
    let io_err = |e: std::io::Error| (classify_io(&e), format!("{addr}: {e}"));
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => ([0, 0, 0, 0], source_port.unwrap_or(0)).into(),
        SocketAddr::V6(_) => ([0u16; 8], source_port.unwrap_or(0)).into(),
    };
    let sock = UdpSocket::bind(local).await.map_err(io_err)?;
    sock.connect(addr).await.map_err(io_err)?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = parse_http_url("http://web.ns.svc:8080/a/b?c=1#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("web.ns.svc", 8080, "/a/b?c=1")
        );
        assert_eq!(t.host_header(), "web.ns.svc:8080");
        let t = parse_http_url("HTTP://10.96.0.10").unwrap();
        assert_eq!(
            (t.port, t.path.as_str(), t.host_header().as_str()),
            (80, "/", "10.96.0.10")
        );
        let t = parse_http_url("http://[fd00::1]:81?x").unwrap();
        assert_eq!((t.host.as_str(), t.path.as_str()), ("fd00::1", "/?x"));
        assert_eq!(t.host_header(), "[fd00::1]:81");
        for bad in [
            "https://x/",
            "ftp://x",
            "http://",
            "http://x:99999/",
            "http://u@x/",
            "x",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_port_needs_port_without_default() {
        assert_eq!(parse_host_port("a:1", None).unwrap(), ("a".into(), 1));
        assert_eq!(
            parse_host_port("[::1]:53", None).unwrap(),
            ("::1".into(), 53)
        );
        assert!(parse_host_port("a", None).is_err());
        assert!(parse_host_port("::1:53", None).is_err());
        assert!(parse_host_port(":80", None).is_err());
    }

    #[test]
    fn responses_parse() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert!(body_complete(raw));
        assert_eq!(parse_response(raw), Some((200, b"hello".to_vec())));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                        4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n";
        assert!(body_complete(chunked) && !body_complete(&chunked[..chunked.len() - 2]));
        assert_eq!(parse_response(chunked), Some((404, b"Wikipedia ".to_vec())));
        assert_eq!(
            parse_response(b"HTTP/1.0 503 x\r\n\r\n"),
            Some((503, vec![]))
        );
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nX: y"), None);
    }
}

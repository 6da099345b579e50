//! The echo backend: every HTTP request and UDP datagram is answered with who served it
//! and who asked. One response per connection, then close, so each request is a new
//! connection that kube-proxy balances on its own.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::{EchoReply, Error};

/// A request head larger than this is not from the probe and not worth reading.
const MAX_HEAD: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub http_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            http_ports: vec![8080],
            udp_ports: vec![8081],
        }
    }
}

/// Identity and readiness shared by all sockets of one server.
#[derive(Debug)]
pub struct ServeState {
    pub hostname: String,
    /// Empty means: report the local address the connection arrived on.
    pub pod_ip: String,
    ready: AtomicBool,
}

impl ServeState {
    pub fn new(hostname: impl Into<String>, pod_ip: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            pod_ip: pod_ip.into(),
            ready: AtomicBool::new(true),
        }
    }

    /// Hostname from the kernel (the pod name), pod IP from the `POD_IP` env (downward API).
    pub fn from_env() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        Self::new(hostname, std::env::var("POD_IP").unwrap_or_default())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The echo for a client; `local` is where the request arrived (the pod IP when no
    /// `POD_IP` was given, since Service traffic arrives DNATed to the pod).
    pub fn echo(&self, client: SocketAddr, local: SocketAddr, path: &str) -> EchoReply {
        let pod_ip = match self.pod_ip.is_empty() {
            true => local.ip().to_canonical().to_string(),
            false => self.pod_ip.clone(),
        };
        EchoReply {
            hostname: self.hostname.clone(),
            pod_ip,
            client_ip: client.ip().to_canonical().to_string(),
            client_port: client.port(),
            server_port: local.port(),
            path: path.to_string(),
        }
    }

    /// Status, content type and body for a request path.
    fn route(&self, target: &str, client: SocketAddr, local: SocketAddr) -> (u16, &str, String) {
        let text = "text/plain";
        let path = target.split('?').next().unwrap_or_default();
        match path {
            "/healthz" => (200, text, "ok".into()),
            "/readyz" if self.is_ready() => (200, text, "ok".into()),
            "/readyz" => (503, text, "not ready".into()),
            "/fail-readiness" => {
                self.ready.store(false, Ordering::Relaxed);
                (200, text, "readiness failed".into())
            }
            "/recover-readiness" => {
                self.ready.store(true, Ordering::Relaxed);
                (200, text, "readiness recovered".into())
            }
            "/hostname" => (200, text, self.hostname.clone()),
            "/clientip" => (200, text, canonical(client).to_string()),
            _ => {
                let echo = self.echo(client, local, target);
                let body = serde_json::to_string(&echo).unwrap_or_default();
                (200, "application/json", body)
            }
        }
    }
}

/// Binds `[::]` (dual stack) and falls back to IPv4 where the pod has no IPv6.
async fn bind_tcp(port: u16) -> io::Result<TcpListener> {
    let v6 = SocketAddr::new(IpAddr::from([0u16; 8]), port);
    match TcpListener::bind(v6).await {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await,
    }
}

async fn bind_udp(port: u16) -> io::Result<UdpSocket> {
    let v6 = SocketAddr::new(IpAddr::from([0u16; 8]), port);
    match UdpSocket::bind(v6).await {
        Ok(s) => Ok(s),
        Err(_) => UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port))).await,
    }
}

/// Binds every port, calls `on_ready` with the bound addresses (port 0 picks one), and
/// serves until `shutdown` completes.
pub async fn serve(
    opts: &ServeOptions,
    state: Arc<ServeState>,
    on_ready: impl FnOnce(&[SocketAddr], &[SocketAddr]),
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let bind_err = |proto, port| {
        move |source| Error::Bind {
            proto,
            port,
            source,
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    let (mut http, mut udp) = (Vec::new(), Vec::new());
    for &port in &opts.http_ports {
        let l = bind_tcp(port).await.map_err(bind_err("tcp", port))?;
        http.push(l.local_addr().map_err(bind_err("tcp", port))?);
        tasks.spawn(run_http(l, state.clone()));
    }
    for &port in &opts.udp_ports {
        let s = bind_udp(port).await.map_err(bind_err("udp", port))?;
        udp.push(s.local_addr().map_err(bind_err("udp", port))?);
        tasks.spawn(run_udp(s, state.clone()));
    }
    on_ready(&http, &udp);
    tokio::select! {
        _ = shutdown => Ok(()),
        Some(done) = tasks.join_next() => match done {
            Ok(Err(e)) => Err(Error::Serve(e)),
            _ => Ok(()),
        },
    }
}

/// Accepts forever; each connection gets its own task, one response, then close.
pub async fn run_http(listener: TcpListener, state: Arc<ServeState>) -> io::Result<()> {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok(c) => c,
            // Running out of descriptors or an aborted handshake must not stop the server.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, client, &state).await {
                eprintln!("{} error: {e}", canonical(client));
            }
        });
    }
}

async fn handle(mut stream: TcpStream, client: SocketAddr, state: &ServeState) -> io::Result<()> {
    let local = stream.local_addr()?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        io::Result::Ok(())
    };
    tokio::time::timeout(READ_TIMEOUT, read_head)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head timeout"))??;
    if head.is_empty() {
        return Ok(()); // a TCP-only check (connect and close)
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or("-"), parts.next().unwrap_or("/"));
    let (status, ctype, body) = state.route(target, client, local);
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    eprintln!("{} {method} {target} {status}", canonical(client));
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The address a reply to `client` leaves from: the pod IP behind a wildcard-bound UDP
/// socket. A UDP connect only picks a route, nothing is sent.
fn reply_source(client: SocketAddr, local: SocketAddr) -> SocketAddr {
    let any = SocketAddr::new(local.ip(), 0);
    std::net::UdpSocket::bind(any)
        .and_then(|s| s.connect(client).and_then(|_| s.local_addr()))
        .map(|a| SocketAddr::new(a.ip(), local.port()))
        .unwrap_or(local)
}

/// Answers every datagram with the echo JSON (path `"udp"`).
pub async fn run_udp(socket: UdpSocket, state: Arc<ServeState>) -> io::Result<()> {
    let local = socket.local_addr()?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // An ICMP error from an earlier reply shows up here; it is not fatal.
            Err(e) => {
                eprintln!("udp recv: {e}");
                continue;
            }
        };
        let at = match state.pod_ip.is_empty() && local.ip().is_unspecified() {
            true => reply_source(client, local),
            false => local,
        };
        let reply = serde_json::to_vec(&state.echo(client, at, "udp")).unwrap_or_default();
        eprintln!("{} UDP {n} bytes", canonical(client));
        if let Err(e) = socket.send_to(&reply, client).await {
            eprintln!("{client} udp send: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{http_probe, tcp_probe, udp_probe, HttpOptions, Outcome, UdpOptions};

    async fn start() -> (Arc<ServeState>, SocketAddr, SocketAddr) {
        let state = Arc::new(ServeState::new("web-1", ""));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let u = bind_udp(0).await.unwrap(); // wildcard, as in a pod
        let d = SocketAddr::from(([127, 0, 0, 1], u.local_addr().unwrap().port()));
        let h = l.local_addr().unwrap();
        tokio::spawn(run_http(l, state.clone()));
        tokio::spawn(run_udp(u, state.clone()));
        (state, h, d)
    }

    async fn get(addr: SocketAddr, path: &str) -> crate::HttpReport {
        http_probe(&HttpOptions::new(format!("http://{addr}{path}"))).await
    }

    #[tokio::test]
    async fn http_echo_new_connection_each_request() {
        let (_, addr, _) = start().await;
        let mut opts = HttpOptions::new(format!("http://{addr}/x?y=1"));
        opts.count = 5;
        let r = http_probe(&opts).await;
        assert_eq!((r.count, r.ok), (5, 5), "{r:?}");
        assert_eq!(r.backends["web-1"], 5);
        assert_eq!(r.client_ips["127.0.0.1"], 5);
        assert_eq!(r.errors.total(), 0);
        let echo: EchoReply = serde_json::from_str(r.body_snippet.as_deref().unwrap()).unwrap();
        assert_eq!(
            (echo.path.as_str(), echo.server_port),
            ("/x?y=1", addr.port())
        );
        assert_eq!(echo.pod_ip, "127.0.0.1");
        // Without keep-alive each request has its own source port.
        let ports: std::collections::HashSet<String> = (0..3)
            .map(|_| get(addr, "/clientip"))
            .collect::<tokio::task::JoinSet<_>>()
            .join_all()
            .await
            .into_iter()
            .map(|r| r.body_snippet.unwrap())
            .collect();
        assert_eq!(ports.len(), 3, "{ports:?}");
    }

    #[tokio::test]
    async fn readiness_can_be_failed_and_recovered() {
        let (state, addr, _) = start().await;
        assert_eq!(get(addr, "/readyz").await.status_codes["200"], 1);
        get(addr, "/fail-readiness").await;
        assert!(!state.is_ready());
        let r = get(addr, "/readyz").await;
        assert_eq!((r.ok, r.sequence[0].as_str()), (0, "http-503"));
        get(addr, "/recover-readiness").await;
        assert_eq!(get(addr, "/readyz").await.ok, 1);
        assert_eq!(get(addr, "/hostname").await.body_snippet.unwrap(), "web-1");
    }

    #[tokio::test]
    async fn closed_ports_refuse_and_udp_echoes() {
        let (_, http, udp) = start().await;
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let r = get(closed, "/").await;
        assert_eq!((r.errors.refused, r.sequence[0].as_str()), (1, "refused"));
        let t = Duration::from_secs(2);
        assert_eq!(
            tcp_probe(&http.to_string(), t, None).await.result,
            Outcome::Connected
        );
        let tr = tcp_probe(&closed.to_string(), t, None).await;
        assert_eq!((tr.result, tr.error.is_some()), (Outcome::Refused, true));
        let udp_opts = |target: String| UdpOptions {
            target,
            count: 2,
            timeout: t,
            interval: Duration::ZERO,
            source_port: None,
            payload: b"x".to_vec(),
            namespace: None,
        };
        let ur = udp_probe(&udp_opts(udp.to_string())).await;
        assert_eq!((ur.count, ur.ok, ur.backends["web-1"]), (2, 2, 2));
        assert!(ur.url.starts_with("udp://"), "{}", ur.url);
        let echo: crate::EchoReply =
            serde_json::from_str(ur.body_snippet.as_deref().unwrap()).unwrap();
        assert_eq!(
            (echo.path.as_str(), echo.pod_ip.as_str()),
            ("udp", "127.0.0.1")
        );
        let closed_udp = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let ur = udp_probe(&udp_opts(closed_udp.to_string())).await;
        assert_eq!((ur.ok, ur.errors.refused), (0, 2));
    }

    #[tokio::test]
    async fn silent_server_times_out_and_eof_is_reset() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Accepts, reads the request, closes without answering, then goes silent.
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.read(&mut [0u8; 1024]).await;
            drop(s);
            let _held = l.accept().await;
            std::future::pending::<()>().await;
        });
        let mut opts = HttpOptions::new(format!("http://{addr}/"));
        opts.count = 2;
        opts.timeout = Duration::from_millis(300);
        let r = http_probe(&opts).await;
        assert_eq!(r.sequence, ["reset", "timeout"], "{r:?}");
        assert!(r.latency_ms.is_none());
    }
}

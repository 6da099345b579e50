//! `svcconf-probe`: prints one JSON object on stdout. Exit 0 when the command ran (a
//! refused target is a result, not a failure), 2 on bad arguments, 1 when `serve`
//! cannot bind or fails.

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Serialize;
use svcconf_probe::{
    dns_probe, http_probe, parse_host_port, parse_http_url, serve, tcp_probe, udp_probe,
    DnsOptions, DnsType, HttpOptions, ServeOptions, ServeState, UdpOptions,
};

#[derive(Parser)]
#[command(
    name = "svcconf-probe",
    version,
    about = "Service networking probe: echo server and clients, JSON out"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
    /// Resolve names as a pod of this namespace does: its own namespace's domain in
    /// the search list is swapped for this one's (a client pod shared by the checks
    /// of several namespaces).
    #[arg(long, global = true)]
    namespace: Option<String>,
}

#[derive(Subcommand)]
enum Role {
    /// HTTP and UDP echo: answers who served (hostname, pod IP) and who asked.
    Serve {
        /// HTTP port, repeatable [default: 8080]
        #[arg(long = "http-port")]
        http_ports: Vec<u16>,
        /// UDP port, repeatable [default: 8081]
        #[arg(long = "udp-port")]
        udp_ports: Vec<u16>,
    },
    /// N GETs, each on a new connection; tallies backends, client IPs and errors.
    Http {
        #[arg(value_parser = valid_url)]
        url: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        #[arg(long)]
        host_header: Option<String>,
    },
    /// One query through the pod's resolv.conf.
    Dns {
        name: String,
        #[arg(long = "type", default_value = "A", value_parser = parse_type)]
        record_type: DnsType,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Query NAME as an absolute name, without the search list.
        #[arg(long)]
        no_search: bool,
    },
    /// Connect once: connected / refused / timeout.
    Tcp {
        #[arg(value_parser = valid_target)]
        target: String,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// N datagrams from one socket, each waiting for one reply; tallied like `http`.
    Udp {
        #[arg(value_parser = valid_target)]
        target: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
        /// Send from this local port (the same 5-tuple as an earlier run).
        #[arg(long)]
        source_port: Option<u16>,
        #[arg(long, default_value = "svcconf-probe")]
        payload: String,
    },
}

fn valid_url(s: &str) -> Result<String, String> {
    parse_http_url(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn valid_target(s: &str) -> Result<String, String> {
    parse_host_port(s, None)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

fn parse_type(s: &str) -> Result<DnsType, String> {
    s.parse().map_err(|e: svcconf_probe::Error| e.to_string())
}

fn print(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).expect("reports serialize")
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ms = Duration::from_millis;
    let cli = Cli::parse();
    let namespace = cli.namespace;
    match cli.role {
        Role::Serve {
            http_ports,
            udp_ports,
        } => {
            let mut opts = ServeOptions::default();
            if !http_ports.is_empty() {
                opts.http_ports = http_ports;
            }
            if !udp_ports.is_empty() {
                opts.udp_ports = udp_ports;
            }
            let state = Arc::new(ServeState::from_env());
            let on_ready = |http: &[_], udp: &[_]| {
                let ports =
                    |a: &[std::net::SocketAddr]| a.iter().map(|a| a.port()).collect::<Vec<_>>();
                print(&serde_json::json!({
                    "role": "serve", "hostname": state.hostname,
                    "httpPorts": ports(http), "udpPorts": ports(udp),
                }));
                eprintln!("serving");
            };
            if let Err(e) = serve(&opts, state.clone(), on_ready, shutdown()).await {
                eprintln!("svcconf-probe serve: {}", error_chain(&e));
                std::process::exit(1);
            }
            eprintln!("shutting down");
        }
        Role::Http {
            url,
            count,
            timeout_ms,
            interval_ms,
            host_header,
        } => {
            let opts = HttpOptions {
                url,
                count,
                timeout: ms(timeout_ms),
                interval: ms(interval_ms),
                host_header,
                namespace,
            };
            print(&http_probe(&opts).await);
        }
        Role::Dns {
            name,
            record_type,
            timeout_ms,
            no_search,
        } => {
            let opts = DnsOptions {
                name,
                record_type,
                timeout: ms(timeout_ms),
                no_search,
                namespace,
            };
            print(&dns_probe(&opts).await);
        }
        Role::Tcp { target, timeout_ms } => {
            print(&tcp_probe(&target, ms(timeout_ms), namespace.as_deref()).await)
        }
        Role::Udp {
            target,
            count,
            timeout_ms,
            interval_ms,
            source_port,
            payload,
        } => {
            let opts = UdpOptions {
                target,
                count,
                timeout: ms(timeout_ms),
                interval: ms(interval_ms),
                source_port,
                payload: payload.into_bytes(),
                namespace,
            };
            print(&udp_probe(&opts).await);
        }
    }
}

/// SIGTERM (kubelet) or Ctrl-C.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

//! `svcconf`: the thin CLI over the harness. Exit codes: 0 every case passed
//! (or was skipped), 1 a case failed or had no result, 2 bad input or
//! infrastructure error, 130 interrupted (Ctrl-C; reports still written).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use regex::Regex;
use svcconf_harness::catalog::Project;
use svcconf_harness::cluster::metallb::{AddressRange, MetallbSource};
use svcconf_harness::cluster::{self, docker_has_image, Kind, Kit, KubeconfigSource};
use svcconf_harness::fixture::{Fixtures, PROBE_IMAGE};
use svcconf_harness::kube::manifest::ImageMap;
use svcconf_harness::model::{Case, ProxyMode, Variant};
use svcconf_harness::report::{JsonReporter, JunitReporter, Reporter, Reporters, TerminalReporter};
use svcconf_harness::runner::{self, Clusters, Deadlines, Provider, RunPlan, RunStatus};
use svcconf_harness::Error;

#[derive(Parser)]
#[command(
    name = "svcconf",
    version,
    about = "Checks Kubernetes Service networking per kube-proxy mode and writes JUnit"
)]
struct Cli {
    /// The project directory (holds fixtures/ and suites/cases/); found from
    /// the current directory by default.
    #[arg(long, global = true)]
    project: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cases.
    Run(Box<RunArgs>),
    /// List the cases (after --focus/--skip).
    List(Filter),
}

#[derive(clap::Args)]
struct Filter {
    /// Run only cases whose `suite/case` matches this regex.
    #[arg(long, value_parser = parse_regex)]
    focus: Option<Regex>,
    /// Skip cases whose `suite/case` matches this regex.
    #[arg(long, value_parser = parse_regex)]
    skip: Option<Regex>,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    filter: Filter,
    /// Proxy modes, comma-separated. kind: one cluster per mode (default: all
    /// three). kubeconfig: the mode the cluster runs (default: detected).
    #[arg(long, value_parser = parse_modes)]
    proxy_mode: Option<Modes>,
    /// Use this kubeconfig instead of kind clusters.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Use this kubeconfig context instead of kind clusters.
    #[arg(long)]
    context: Option<String>,
    /// JUnit output.
    #[arg(long, default_value = "svcconf-report/junit.xml")]
    junit: PathBuf,
    /// JSON output.
    #[arg(long, default_value = "svcconf-report/report.json")]
    json: PathBuf,
    /// Keep the kind clusters this run creates.
    #[arg(long)]
    keep_cluster: bool,
    /// YAML/JSON map of image → image, applied to every container.
    #[arg(long)]
    image_map: Option<PathBuf>,
    /// The image to run for svcconf/probe:dev (default: the kit's).
    #[arg(long)]
    probe_image: Option<String>,
    /// kind node image (default: the kit's, else kind's own).
    #[arg(long)]
    node_image: Option<String>,
    /// Also run every case sabotaged (each must then fail).
    #[arg(long)]
    sabotage: bool,
    /// Cases run at once per mode (6 measured fastest on a 2-core machine).
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    /// MetalLB's release manifest (metallb-native.yaml of the version
    /// fixtures/metallb/pin.yaml pins), for clusters without MetalLB;
    /// default: the kit's.
    #[arg(long)]
    metallb_manifest: Option<PathBuf>,
    /// Addresses MetalLB may hand out (A-B or CIDR) on the nodes' network;
    /// default on kind: carved from the kind docker network.
    #[arg(long, value_parser = parse_range)]
    lb_addresses: Option<AddressRange>,
}

fn parse_range(s: &str) -> Result<AddressRange, String> {
    s.parse()
}

fn parse_regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| e.to_string())
}

/// A comma-separated list of modes, as one flag value.
#[derive(Debug, Clone, PartialEq)]
struct Modes(Vec<ProxyMode>);

fn parse_modes(s: &str) -> Result<Modes, String> {
    ProxyMode::parse_list(s)
        .map(Modes)
        .map_err(|e| e.to_string())
}

impl Filter {
    fn select<'a>(&self, cases: &'a [Case]) -> Vec<&'a Case> {
        cases
            .iter()
            .filter(|c| {
                let id = c.id();
                self.focus.as_ref().is_none_or(|r| r.is_match(&id))
                    && !self.skip.as_ref().is_some_and(|r| r.is_match(&id))
            })
            .collect()
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "svcconf=warn,svcconf_harness=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(main_async(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("svcconf: error: {}", cluster::error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

async fn main_async(cli: Cli) -> Result<u8, Error> {
    let project = Project::discover(cli.project.as_deref())?;
    let catalog = project.load_catalog()?;
    match cli.command {
        Command::List(filter) => {
            for case in filter.select(catalog.cases()) {
                println!("{:32} {}", case.id(), case.description);
            }
            Ok(0)
        }
        Command::Run(args) => run(project, catalog.cases(), *args).await,
    }
}

async fn run(project: Project, all: &[Case], args: RunArgs) -> Result<u8, Error> {
    let cases: Vec<Case> = args.filter.select(all).into_iter().cloned().collect();
    if cases.is_empty() {
        return Err(Error::BadInput(
            "no case matches --focus/--skip (see `svcconf list`)".into(),
        ));
    }
    let kit = Kit::load()?;
    let mut images = match &args.image_map {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            ImageMap::parse(&path.display().to_string(), &text)?
        }
        None => ImageMap::default(),
    };
    if let Some(probe) = &args.probe_image {
        images.insert(PROBE_IMAGE, probe);
    } else if let Some(probe) = kit.as_ref().and_then(|k| k.images.probe.as_deref()) {
        images.insert_default(PROBE_IMAGE, probe);
    }
    let use_kubeconfig = args.kubeconfig.is_some() || args.context.is_some();
    if !use_kubeconfig {
        // Public application images → the kit's stand-ins, which only a
        // kind cluster of this machine can load.
        for (from, to) in kit.iter().flat_map(|k| k.image_map.iter()) {
            images.insert_default(from, to);
        }
    }
    if let Some(path) = &args.metallb_manifest {
        if !path.is_file() {
            return Err(Error::BadInput(format!(
                "--metallb-manifest {}: no such file",
                path.display()
            )));
        }
    }
    let fixtures = Arc::new(Fixtures::new(project.clone(), images));

    let (provider, modes) = if use_kubeconfig {
        let source = KubeconfigSource {
            path: args.kubeconfig.clone(),
            context: args.context.clone(),
        };
        // Connect now: a bad kubeconfig, context or server is exit 2 before anything runs.
        let client = source.connect().await?;
        let modes = match args.proxy_mode.clone() {
            Some(Modes(m)) => m,
            None => {
                let detected = cluster::detect_proxy_mode(&client).await.ok_or_else(|| {
                    Error::BadInput(
                        "cannot tell which mode kube-proxy runs in; pass --proxy-mode".into(),
                    )
                })?;
                vec![detected.mode.parse().map_err(|_| {
                    Error::BadInput(format!(
                        "kube-proxy runs in {detected}, which svcconf does not check"
                    ))
                })?]
            }
        };
        (Provider::Kubeconfig(source), modes)
    } else {
        let docker = cluster::docker_available().await?;
        for warning in cluster::kind_host_warnings() {
            eprintln!("svcconf: warning: {warning}");
        }
        let kind = Kind::locate(kit.as_ref())?;
        let node_image = args
            .node_image
            .clone()
            .or_else(|| kit.as_ref().map(|k| k.node_image.clone()));
        // Every case runs the probe image: loaded with the cluster. Others
        // (WordPress, MySQL) are loaded by the first case that runs them.
        let mut preload = Vec::new();
        let probe = fixtures.image_map().resolve(PROBE_IMAGE).to_string();
        if docker_has_image(&docker, &probe).await {
            preload.push(probe);
        }
        let modes = args
            .proxy_mode
            .clone()
            .map_or_else(|| ProxyMode::ALL.to_vec(), |m| m.0);
        (
            Provider::Kind {
                kind,
                node_image,
                preload,
                configs: project.root().join("kind-configs"),
            },
            modes,
        )
    };

    if fixtures.image_map().resolve(PROBE_IMAGE) == PROBE_IMAGE {
        eprintln!("svcconf: warning: {PROBE_IMAGE} is not mapped (no kit probe image, no --probe-image or --image-map entry); pods will pull it as named");
    }
    let variants = if args.sabotage {
        vec![Variant::Plain, Variant::Sabotaged]
    } else {
        vec![Variant::Plain]
    };
    let plan = RunPlan {
        modes,
        cases,
        variants,
        concurrency: args.concurrency,
        keep_clusters: args.keep_cluster,
        metallb: MetallbSource {
            manifest: args.metallb_manifest.clone(),
            addresses: args.lb_addresses,
        },
    };
    let deadlines = Deadlines::default();
    let clusters = Clusters::new(provider, deadlines.clone());

    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(TerminalReporter::stderr()),
        Box::new(JunitReporter::new(args.junit.clone())),
        Box::new(JsonReporter::new(args.json.clone())),
    ];
    let reporting = tokio::spawn(async move {
        let mut reporters = Reporters::new(reporters);
        while let Some(event) = events_rx.recv().await {
            reporters.handle(&event);
        }
        reporters.finish()
    });
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nsvcconf: interrupted; deleting what this run created (Ctrl-C again does not stop the cleanup)");
            let _ = cancel_tx.send(true);
            // Keep the sender alive so the cleanup is not treated as a second cancel.
            std::future::pending::<()>().await;
        }
    });
    let status = runner::run(&plan, &clusters, fixtures, &deadlines, events_tx, cancel_rx).await;
    let (_record, errors) = reporting.await.expect("reporter task");
    if let Some(e) = errors.into_iter().next() {
        return Err(e.into());
    }
    eprintln!("reports: {} {}", args.junit.display(), args.json.display());
    Ok(match status {
        RunStatus::Passed => 0,
        RunStatus::Failed => 1,
        RunStatus::Infrastructure => 2,
        RunStatus::Interrupted => 130,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Run(args) => *args,
            Command::List(_) => panic!("not run"),
        }
    }

    #[test]
    fn parses_a_full_run() {
        let args = run_args(&[
            "svcconf",
            "run",
            "--proxy-mode",
            "nftables,iptables",
            "--focus",
            "^routing/",
            "--skip",
            "multi",
            "--junit",
            "out/j.xml",
            "--keep-cluster",
            "--image-map",
            "m.yaml",
            "--sabotage",
        ]);
        assert_eq!(
            args.proxy_mode,
            Some(Modes(vec![ProxyMode::Nftables, ProxyMode::Iptables]))
        );
        assert_eq!(args.junit, PathBuf::from("out/j.xml"));
        assert!(args.keep_cluster && args.sabotage);
        assert_eq!(args.image_map, Some(PathBuf::from("m.yaml")));
        assert!(args
            .filter
            .focus
            .as_ref()
            .unwrap()
            .is_match("routing/clusterip-basic"));
    }

    #[test]
    fn defaults_write_reports_under_svcconf_report() {
        let args = run_args(&["svcconf", "run"]);
        assert_eq!(args.proxy_mode, None);
        assert_eq!(args.junit, PathBuf::from("svcconf-report/junit.xml"));
        assert_eq!(args.json, PathBuf::from("svcconf-report/report.json"));
        assert_eq!(args.concurrency, 6);
    }

    #[test]
    fn rejects_bad_input_as_usage_errors() {
        for argv in [
            &["svcconf", "run", "--proxy-mode", "userspace"][..],
            &["svcconf", "run", "--proxy-mode", ""],
            &["svcconf", "run", "--focus", "("],
            &["svcconf", "frobnicate"],
        ] {
            let err = Cli::try_parse_from(argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} parsed"));
            // clap exits 2 on usage errors, like every other bad input.
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn filters_by_suite_and_case() {
        let catalog = svcconf_harness::catalog::Project::discover(Some(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        ))
        .unwrap()
        .load_catalog()
        .unwrap();
        let args = run_args(&[
            "svcconf",
            "run",
            "--focus",
            "^routing/(clusterip-basic|multi-port)$",
            "--skip",
            "multi-port$",
        ]);
        let names: Vec<&str> = args
            .filter
            .select(catalog.cases())
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["clusterip-basic"]);
    }
}

//! `svcconf` and `kubectl svcconf`: the thin CLI over the harness (both
//! binaries call [`main`]). Exit codes are [`Exit`]'s: 0 every case passed
//! (or was skipped), 1 a case failed or had no result, 2 bad input or
//! infrastructure, 130 interrupted (Ctrl-C or SIGTERM; what the run created
//! is removed, reports written).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::catalog::Project;
use crate::cluster::metallb::{AddressRange, MetallbSource, Pin};
use crate::cluster::{self, docker_has_image, Kind, Kit, KubeconfigSource};
use crate::fixture::{Fixtures, PROBE_IMAGE, SVCCONF_IMAGE};
use crate::kube::manifest::ImageMap;
use crate::migrate::Migration;
use crate::model::{Addon, Case, Event, IpFamilies, IpFamily, ProxyMode, Variant};
use crate::report::{ReportFiles, Reporters, SonobuoyResults, TerminalReporter};
use crate::runner::{self, Clusters, Deadlines, Provider, RunPlan};
use crate::{Error, Exit};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use regex::Regex;

const ABOUT: &str = "Checks Kubernetes Service networking per kube-proxy mode and writes JUnit";
const LONG_ABOUT: &str = "\
Checks Kubernetes Service networking (ClusterIP, NodePort, LoadBalancer, externalIPs,
ExternalName, headless, session affinity, source IP, DNS) per kube-proxy mode, and
writes JUnit.

Where the cases run (--provider):
  kind        one kind cluster per proxy mode, svcconf-<mode>, created and deleted by
              the run (the default when no kubeconfig is named)
  kubeconfig  your cluster, found as kubectl finds it: --kubeconfig, else KUBECONFIG,
              else ~/.kube/config, else the pod's service account; --context as kubectl
              (the default when --kubeconfig, --context or KUBECONFIG is set, in a pod,
              and as `kubectl svcconf`)";

#[derive(Parser)]
#[command(name = "svcconf", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// A directory of your own cases (same schema as the built-in ones),
    /// with their fixtures under DIR/fixtures/; a case of a built-in name
    /// replaces that case.
    #[arg(long, global = true, value_name = "DIR", env = "SVCCONF_CASES")]
    cases: Option<PathBuf>,
    /// How many times slower than a usual machine this host is (a VM under
    /// emulation): every deadline and request timeout is multiplied by it,
    /// never what a check expects. From 1 to 20.
    #[arg(long, global = true, value_name = "FACTOR", env = crate::model::SCALE_ENV, value_parser = crate::model::parse_scale)]
    deadline_scale: Option<f64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cases.
    Run(Box<RunArgs>),
    /// List the cases (after --focus/--skip).
    List(Filter),
    /// Print every image a run would use, after --image-map, one per line
    /// (to mirror them into a private registry).
    Images(Box<ImagesArgs>),
    /// Switch your cluster's kube-proxy to another mode, checked: the cases
    /// in the current mode, the switch (ConfigMap `mode:`, rollout restart),
    /// the cases again, a before/after table with the rules read from every
    /// node. The original mode is put back if the switch does not complete,
    /// a case that passed before fails after, or on Ctrl-C/SIGTERM. Changes
    /// the cluster only with --yes.
    Migrate(Box<MigrateArgs>),
    /// Look at your cluster, read-only, for what its Service networking
    /// uses that is deprecated or changes in a coming release (ipvs,
    /// iptables by default, externalIPs, PreferClose, loadBalancerIP, v1
    /// Endpoints written by clients, ...): each finding with the version,
    /// what breaks and the move to make. Exit 1 when a finding is at or
    /// above --fail-on, 2 when a check could not read what it needs.
    Audit(Box<AuditArgs>),
}

#[derive(clap::Args)]
struct AuditArgs {
    /// The kubeconfig file (as kubectl: else KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// The least severity that fails the audit: notice, deprecated, change
    /// (a default changes in a named release), removal (turned off or
    /// removed in a named release), or never.
    #[arg(long, value_name = "SEVERITY", default_value = "deprecated", value_parser = parse_fail_on)]
    fail_on: crate::model::FailOn,
    /// Directory for audit.json and junit.xml.
    #[arg(long, value_name = "DIR", default_value = "svcconf-audit")]
    report_dir: PathBuf,
    /// JUnit output (default: <report-dir>/junit.xml).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// JSON output (default: <report-dir>/audit.json).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

fn parse_fail_on(s: &str) -> Result<crate::model::FailOn, String> {
    s.parse()
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// The mode to switch kube-proxy to.
    #[arg(long, value_parser = parse_mode)]
    to: ProxyMode,
    /// Go ahead and change the cluster's kube-proxy (without it, nothing is changed).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    filter: Filter,
    /// The kubeconfig file (as kubectl: else KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// YAML/JSON map of image → image, applied to every container.
    #[arg(long, value_name = "FILE")]
    image_map: Option<PathBuf>,
    /// The image to run for svcconf/probe:dev (default: the kit's).
    #[arg(long, value_name = "IMAGE", env = "SVCCONF_PROBE_IMAGE")]
    probe_image: Option<String>,
    /// Directory for before/, after/ (each run's JUnit and JSON) and migrate.json.
    #[arg(long, value_name = "DIR", default_value = "svcconf-migrate")]
    report_dir: PathBuf,
    /// Cases run at once.
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    #[command(flatten)]
    metallb: MetallbArgs,
}

impl MigrateArgs {
    /// The run the migration does before and after its switch, as
    /// `svcconf run` flags: the user's cluster, its detected mode.
    fn run_args(&self) -> RunArgs {
        RunArgs {
            filter: Filter {
                focus: self.filter.focus.clone(),
                skip: self.filter.skip.clone(),
            },
            target: Target {
                provider: Some(ProviderKind::Kubeconfig),
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                proxy_mode: None,
                ip_family: None,
                kubernetes_version: None,
                image_map: self.image_map.clone(),
                probe_image: self.probe_image.clone(),
            },
            report_dir: self.report_dir.clone(),
            junit: None,
            json: None,
            keep_cluster: false,
            node_image: None,
            sabotage: false,
            concurrency: self.concurrency,
            metallb: self.metallb.clone(),
            sonobuoy: false,
        }
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProviderKind {
    /// One kind cluster per proxy mode.
    Kind,
    /// The cluster your kubeconfig names.
    Kubeconfig,
}

/// Where the cases run and which images they use.
#[derive(clap::Args)]
struct Target {
    /// Where the cases run (see --help); default: kubeconfig when
    /// --kubeconfig, --context or KUBECONFIG is set or in a pod, else kind.
    #[arg(long, value_enum)]
    provider: Option<ProviderKind>,
    /// The kubeconfig file (provider kubeconfig).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (provider kubeconfig).
    #[arg(long)]
    context: Option<String>,
    /// Proxy modes, comma-separated. kind: one cluster per mode (default:
    /// iptables, nftables, ipvs; a mode this host cannot run is skipped,
    /// unless named here, which makes it an error). kubeconfig: the mode the
    /// cluster runs (default: detected; a mismatch is an error).
    #[arg(long, value_parser = parse_modes)]
    proxy_mode: Option<Modes>,
    /// IP families: ipv4, ipv6 or dual (every case once per family). kind:
    /// the clusters' `networking.ipFamily` (default ipv4). kubeconfig: the
    /// families to run (default: every family the nodes have addresses of;
    /// one they lack is an error).
    #[arg(long, value_name = "FAMILY", value_parser = parse_ip_family)]
    ip_family: Option<IpFamilies>,
    /// kind: the Kubernetes version of the node image (default: the kit's
    /// default version; without a kit, kind's own image).
    #[arg(long, value_name = "VERSION")]
    kubernetes_version: Option<String>,
    /// YAML/JSON map of image → image, applied to every container.
    #[arg(long, value_name = "FILE")]
    image_map: Option<PathBuf>,
    /// The image to run for svcconf/probe:dev (default: the kit's).
    #[arg(long, value_name = "IMAGE", env = "SVCCONF_PROBE_IMAGE")]
    probe_image: Option<String>,
}

#[derive(clap::Args)]
struct ImagesArgs {
    #[command(flatten)]
    filter: Filter,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    filter: Filter,
    #[command(flatten)]
    target: Target,
    /// Directory for the reports and, after a failed run, the clusters' logs.
    #[arg(
        long,
        value_name = "DIR",
        env = "SVCCONF_REPORT_DIR",
        default_value = "svcconf-report"
    )]
    report_dir: PathBuf,
    /// JUnit output (default: <report-dir>/junit.xml).
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// JSON output (default: <report-dir>/report.json).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Keep the kind clusters this run creates.
    #[arg(long)]
    keep_cluster: bool,
    /// kind node image (default: the kit's for --kubernetes-version, else kind's own).
    #[arg(long, value_name = "IMAGE")]
    node_image: Option<String>,
    /// Also run every case sabotaged (each must then fail).
    #[arg(long)]
    sabotage: bool,
    /// Cases run at once per mode (6 measured fastest on a 2-core machine).
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    #[command(flatten)]
    metallb: MetallbArgs,
    /// Run as a sonobuoy plugin (on by itself in one: sonobuoy sets
    /// SONOBUOY=true): the reports go to $SONOBUOY_RESULTS_DIR (default
    /// /tmp/sonobuoy/results), then its `done` file names the JUnit, also
    /// when the input is bad.
    #[arg(long, env = "SONOBUOY")]
    sonobuoy: bool,
}

/// Where MetalLB comes from, for the LoadBalancer cases.
#[derive(clap::Args, Clone)]
struct MetallbArgs {
    /// MetalLB's release manifest (metallb-native.yaml of the version
    /// fixtures/metallb/pin.yaml pins), for clusters without MetalLB;
    /// default: the kit's.
    #[arg(long, value_name = "FILE")]
    metallb_manifest: Option<PathBuf>,
    /// Addresses MetalLB may hand out (A-B or CIDR) on the nodes' network;
    /// default on kind: carved from the kind docker network.
    #[arg(long, value_parser = parse_range)]
    lb_addresses: Option<AddressRange>,
}

impl Target {
    /// The kubeconfig the flags name (kubectl's precedence fills the rest).
    fn kubeconfig_source(&self) -> KubeconfigSource {
        KubeconfigSource {
            path: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }
}

impl RunArgs {
    /// `--junit` and `--json`, else their names in `--report-dir`.
    fn report_files(&self) -> ReportFiles {
        let default = ReportFiles::in_dir(&self.report_dir);
        ReportFiles {
            junit: self.junit.clone().unwrap_or(default.junit),
            json: self.json.clone().or(default.json),
        }
    }
}

fn parse_range(s: &str) -> Result<AddressRange, String> {
    s.parse()
}

fn parse_ip_family(s: &str) -> Result<IpFamilies, String> {
    s.parse()
        .map_err(|e: crate::model::UnknownIpFamily| e.to_string())
}

fn parse_mode(s: &str) -> Result<ProxyMode, String> {
    s.parse()
        .map_err(|e: crate::model::UnknownProxyMode| e.to_string())
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

/// Invoked as `kubectl-svcconf` (by `kubectl svcconf`): help reads as
/// kubectl's, and the cluster is kubectl's.
fn as_kubectl_plugin(argv0: &str) -> bool {
    Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("kubectl-"))
}

fn parse_cli(argv: Vec<String>) -> (Cli, bool) {
    let plugin = argv.first().is_some_and(|a| as_kubectl_plugin(a));
    let mut command = Cli::command();
    if plugin {
        command = command.name("kubectl svcconf").bin_name("kubectl svcconf");
    }
    let parsed = command
        .try_get_matches_from(argv)
        .and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => (cli, plugin),
        Err(e) => {
            use clap::error::ErrorKind;
            let usage = !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if usage && in_sonobuoy_plugin() {
                // sonobuoy waits for the done file: bad arguments still write it.
                let detail = e.to_string();
                let first = detail
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches("error: ");
                let _ = e.print();
                sonobuoy_setup_failure(
                    &SonobuoyResults::from_env(),
                    &format!("bad arguments: {first}"),
                );
                std::process::exit(i32::from(Exit::BadInput.code()));
            }
            e.exit()
        }
    }
}

/// sonobuoy sets SONOBUOY=true in every plugin container.
fn in_sonobuoy_plugin() -> bool {
    std::env::var("SONOBUOY").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// A plugin run that could not start: the JUnit with one `setup` error
/// testcase naming `reason`, then the done file naming it.
/// sonobuoy's `done` file naming `junit`, and a line saying so (or why not).
fn write_done(results: &SonobuoyResults, junit: &std::path::Path) {
    match results.write_done(junit) {
        Ok(()) => eprintln!(
            "sonobuoy: {} names {}",
            results.done_file().display(),
            junit.display()
        ),
        Err(e) => eprintln!("svcconf: error: {}", cluster::error_chain(&e)),
    }
}

fn sonobuoy_setup_failure(results: &SonobuoyResults, reason: &str) {
    let files = ReportFiles {
        junit: results.dir.join("junit.xml"),
        json: None,
    };
    let mut reporters = Reporters::new(files.reporters(None));
    for event in Event::setup_failure(reason.to_string(), 0.0, false) {
        reporters.handle(&event);
    }
    let (_, errors) = reporters.finish();
    for e in errors {
        eprintln!("svcconf: error: {}", cluster::error_chain(&e));
    }
    write_done(results, &files.junit);
}

/// Parses the process's arguments, runs the command, and exits as [`Exit`] says.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "svcconf=warn,svcconf_harness=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (cli, plugin) = parse_cli(std::env::args().collect());
    if let Some(k) = cli.deadline_scale {
        crate::model::set_scale(k);
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    ExitCode::from(runtime.block_on(main_async(cli, plugin)).code())
}

async fn main_async(cli: Cli, plugin: bool) -> Exit {
    let fail = |e: Error| {
        eprintln!("svcconf: error: {}", cluster::error_chain(&e));
        e.exit()
    };
    match cli.command {
        Command::List(filter) => match catalog(cli.cases.as_deref()) {
            Ok((_, cases)) => {
                for case in filter.select(&cases) {
                    println!("{:32} {}", case.id(), case.description);
                }
                Exit::Passed
            }
            Err(e) => fail(e),
        },
        Command::Images(args) => match images(cli.cases.as_deref(), &args, plugin).await {
            Ok(images) => {
                for image in images {
                    println!("{image}");
                }
                Exit::Passed
            }
            Err(e) => fail(e),
        },
        Command::Run(args) => run(cli.cases.as_deref(), *args, plugin).await,
        Command::Migrate(args) => match migration(cli.cases.as_deref(), &args).await {
            Ok(migration) => {
                let cancel = runner::cancel_on_signal(
                    "putting kube-proxy's mode back and deleting what this run created",
                );
                migration.run(cancel).await
            }
            Err(e) => fail(e),
        },
        Command::Audit(args) => {
            let source = KubeconfigSource {
                path: args.kubeconfig.clone(),
                context: args.context.clone(),
            };
            match crate::audit::audit(&source).await {
                Ok(audit) => crate::audit::report(
                    &audit,
                    args.fail_on,
                    &args
                        .json
                        .unwrap_or_else(|| args.report_dir.join("audit.json")),
                    &args
                        .junit
                        .unwrap_or_else(|| args.report_dir.join("junit.xml")),
                ),
                Err(e) => fail(e),
            }
        }
    }
}

/// The built-in catalog with `--cases` laid over it.
fn catalog(cases: Option<&Path>) -> Result<(Project, Vec<Case>), Error> {
    let mut project = Project::built_in();
    if let Some(dir) = cases {
        project = project.with_cases_dir(dir)?;
    }
    let cases = project.load_catalog()?.cases().to_vec();
    Ok((project, cases))
}

/// The provider the flags, the environment and the invocation choose.
fn provider_kind(target: &Target, plugin: bool) -> Result<ProviderKind, Error> {
    let named = target.kubeconfig.is_some() || target.context.is_some();
    match target.provider {
        Some(ProviderKind::Kind) if named => Err(Error::BadInput(
            "--kubeconfig/--context choose your cluster; --provider kind boots its own".into(),
        )),
        Some(p) => Ok(p),
        None => {
            let env = |v: &str| std::env::var_os(v).is_some_and(|v| !v.is_empty());
            let kubeconfig = named || plugin || env("KUBECONFIG") || env("KUBERNETES_SERVICE_HOST");
            Ok(if kubeconfig {
                ProviderKind::Kubeconfig
            } else {
                ProviderKind::Kind
            })
        }
    }
}

/// The image map: `--image-map`, the probe image (`--probe-image`, else
/// the kit's), and on a kind cluster of this host the kit's stand-ins for
/// the public application images (only its nodes can load them).
fn image_map(target: &Target, kit: Option<&Kit>, kind: bool) -> Result<ImageMap, Error> {
    let mut images = match &target.image_map {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            ImageMap::parse(&path.display().to_string(), &text)?
        }
        None => ImageMap::default(),
    };
    if let Some(probe) = &target.probe_image {
        images.insert(PROBE_IMAGE, probe);
    } else if let Some(probe) = kit.and_then(|k| k.images.probe.as_deref()) {
        images.insert_default(PROBE_IMAGE, probe);
    }
    if let Some(svcconf) = kit.and_then(|k| k.images.svcconf.as_deref()) {
        images.insert_default(SVCCONF_IMAGE, svcconf);
    }
    if kind {
        for (from, to) in kit.iter().flat_map(|k| k.image_map.iter()) {
            images.insert_default(from, to);
        }
    }
    Ok(images)
}

/// `svcconf images`: what the selected cases' pods and containers run, and
/// MetalLB's pinned images when a selected case needs it, all mapped.
async fn images(
    cases: Option<&Path>,
    args: &ImagesArgs,
    plugin: bool,
) -> Result<Vec<String>, Error> {
    let (project, all) = catalog(cases)?;
    let selected: Vec<Case> = args.filter.select(&all).into_iter().cloned().collect();
    let kit = Kit::load()?;
    let target = &args.target;
    let kind = match provider_kind(target, plugin)? {
        ProviderKind::Kind => true,
        // A kind cluster of this host runs the kit's stand-ins, as a run would.
        ProviderKind::Kubeconfig => match target.kubeconfig_source().connect().await {
            Ok(client) => {
                cluster::is_local_kind(&client, Kind::locate(kit.as_ref()).ok().as_ref()).await
            }
            Err(_) => false,
        },
    };
    let map = image_map(target, kit.as_ref(), kind)?;
    let fixtures = Fixtures::new(project.clone(), map);
    let mut images = fixtures.images(&selected)?;
    // Every run loads the probe image with the cluster (clients outside it
    // run it too), whichever cases it selected; svcconf's own image is what
    // runs it in the cluster (deploy/: a Job, or the sonobuoy plugin).
    images.push(fixtures.image_map().resolve(PROBE_IMAGE).to_string());
    images.push(fixtures.image_map().resolve(SVCCONF_IMAGE).to_string());
    if selected.iter().any(|c| c.needs.contains(&Addon::Metallb)) {
        let pin = Pin::load(&project).map_err(|e| Error::BadInput(cluster::error_chain(&e)))?;
        images.extend(
            pin.images
                .iter()
                .map(|i| fixtures.image_map().resolve(i).to_string()),
        );
    }
    images.sort();
    images.dedup();
    Ok(images)
}

/// `svcconf migrate`'s checks before it changes anything: the cluster, its
/// mode, the target mode, the confirmation.
async fn migration(cases: Option<&Path>, args: &MigrateArgs) -> Result<Migration, Error> {
    let run_args = args.run_args();
    let Prepared {
        mut plan,
        provider,
        fixtures,
    } = prepare(cases, &run_args, false).await?;
    let from = plan.modes[0];
    let to = args.to;
    if from == to {
        return Err(Error::BadInput(format!("kube-proxy already runs {to}")));
    }
    let Provider::Kubeconfig { source, kind, .. } = &provider else {
        unreachable!("migrate runs on the kubeconfig provider");
    };
    let client = source.connect().await?;
    // A kind cluster of this host: its nodes share this kernel.
    if cluster::is_local_kind(&client, kind.as_ref()).await {
        if let Some(reason) = cluster::mode_unavailable(to) {
            return Err(Error::BadInput(format!("cannot migrate to {to}: {reason}")));
        }
    }
    let config = cluster::proxy_mode::configured(&client)
        .await
        .map_err(Error::BadInput)?;
    if cluster::proxy_mode::with_mode(&config, to).is_none() {
        return Err(Error::BadInput(
            "ConfigMap kube-system/kube-proxy's config.conf has no top-level `mode:` line to edit"
                .into(),
        ));
    }
    if !cluster::proxy_mode::rolls_on_change(&client).await {
        return Err(Error::BadInput("DaemonSet kube-system/kube-proxy updates OnDelete: a rollout restart would not replace its pods".into()));
    }
    // A case that switches the mode itself has no place between the two runs.
    plan.cases.retain(|c| !c.reconfigures_kube_proxy());
    if !args.yes {
        return Err(Error::BadInput(format!(
            "svcconf migrate changes {}: kube-proxy {from} → {to} (ConfigMap kube-system/kube-proxy `mode:`, then a rollout restart of DaemonSet kube-system/kube-proxy), between two runs of {} cases; pass --yes to go ahead",
            source.name(),
            plan.cases.len()
        )));
    }
    Ok(Migration {
        plan,
        provider,
        fixtures,
        client,
        from,
        to,
        report_dir: args.report_dir.clone(),
    })
}

/// What `svcconf run` checked before starting: everything a bad flag,
/// file or cluster breaks.
struct Prepared {
    plan: RunPlan,
    provider: Provider,
    fixtures: Arc<Fixtures>,
}

async fn prepare(cases: Option<&Path>, args: &RunArgs, plugin: bool) -> Result<Prepared, Error> {
    let (project, all) = catalog(cases)?;
    let selected: Vec<Case> = args.filter.select(&all).into_iter().cloned().collect();
    if selected.is_empty() {
        return Err(Error::BadInput(
            "no case matches --focus/--skip (see `svcconf list`)".into(),
        ));
    }
    let target = &args.target;
    let kit = Kit::load()?;
    let kind_provider = provider_kind(target, plugin)? == ProviderKind::Kind;
    if let Some(path) = &args.metallb.metallb_manifest {
        if !path.is_file() {
            return Err(Error::BadInput(format!(
                "--metallb-manifest {}: no such file",
                path.display()
            )));
        }
    }
    let (provider, modes, families, fixtures) = if !kind_provider {
        if target.kubernetes_version.is_some() || args.node_image.is_some() {
            return Err(Error::BadInput(
                "--kubernetes-version and --node-image choose kind node images; your cluster runs what it runs".into(),
            ));
        }
        let source = target.kubeconfig_source();
        // Connect now: a bad kubeconfig, context or server is exit 2 before anything runs.
        let client = source.connect().await?;
        // A kind cluster of this host gets its images loaded, as one svcconf made.
        let kind = Kind::locate(kit.as_ref()).ok();
        let local = cluster::is_local_kind(&client, kind.as_ref()).await;
        let modes = match target.proxy_mode.clone() {
            Some(Modes(m)) => m,
            None => {
                let docker = local.then(|| cluster::command::which("docker")).flatten();
                let mode = cluster::dataplane::cluster_mode(&client, docker.as_deref()).await;
                vec![mode.map_err(Error::BadInput)?]
            }
        };
        let has = cluster::families(&client).await.map_err(|e| {
            Error::BadInput(format!(
                "reading the cluster's nodes: {}",
                cluster::error_chain(&e)
            ))
        })?;
        let families = match target.ip_family {
            Some(asked) => {
                let families = asked.families();
                if let Some(why) = families.iter().find_map(|f| has.why_not(*f)) {
                    return Err(Error::BadInput(format!("--ip-family {asked}: {why}")));
                }
                families
            }
            None => match has.families() {
                none if none.is_empty() => vec![IpFamily::Ipv4],
                some => some,
            },
        };
        let fixtures = Fixtures::new(project.clone(), image_map(target, kit.as_ref(), local)?);
        let probe = fixtures.image_map().resolve(PROBE_IMAGE).to_string();
        let provider = Provider::Kubeconfig {
            source,
            kind,
            preload: vec![probe],
        };
        (provider, modes, families, fixtures)
    } else {
        let modes = match &target.proxy_mode {
            Some(Modes(asked)) => {
                // Asked for by name: a mode this host cannot run is an error.
                if let Some(reason) = asked.iter().find_map(|m| cluster::mode_unavailable(*m)) {
                    return Err(Error::BadInput(reason));
                }
                asked.clone()
            }
            None => ProxyMode::ALL.to_vec(),
        };
        let docker = cluster::docker_available().await?;
        for warning in cluster::kind_host_warnings() {
            eprintln!("svcconf: warning: {warning}");
        }
        let kind = Kind::locate(kit.as_ref())?;
        let node_image = cluster::node_image(
            kit.as_ref(),
            args.node_image.as_deref(),
            target.kubernetes_version.as_deref(),
        )?;
        let fixtures = Fixtures::new(project.clone(), image_map(target, kit.as_ref(), true)?);
        // Every case runs the probe image: loaded with the cluster. Others
        // (WordPress, MySQL) are loaded by the first case that runs them.
        let probe = fixtures.image_map().resolve(PROBE_IMAGE).to_string();
        let mut preload = Vec::new();
        if docker_has_image(&docker, &probe).await {
            preload.push(probe);
        }
        let provider = Provider::Kind {
            kind,
            node_image,
            preload,
            configs: project,
            ip_family: target.ip_family.unwrap_or_default(),
        };
        let families = target.ip_family.unwrap_or_default().families();
        (provider, modes, families, fixtures)
    };
    let fixtures = Arc::new(fixtures);
    let probe = fixtures.image_map().resolve(PROBE_IMAGE).to_string();
    if probe == PROBE_IMAGE {
        eprintln!("svcconf: warning: {PROBE_IMAGE} is not mapped (no kit probe image, no --probe-image or --image-map entry); pods will pull it as named");
    }
    let variants = if args.sabotage {
        vec![Variant::Plain, Variant::Sabotaged]
    } else {
        vec![Variant::Plain]
    };
    Ok(Prepared {
        plan: RunPlan {
            modes,
            families,
            cases: selected,
            variants,
            concurrency: args.concurrency,
            keep_clusters: args.keep_cluster,
            metallb: MetallbSource {
                manifest: args.metallb.metallb_manifest.clone(),
                addresses: args.metallb.lb_addresses,
            },
            logs_dir: Some(args.report_dir.join("logs")),
        },
        provider,
        fixtures,
    })
}

/// `svcconf run`: the reports are written whatever happens after the
/// arguments parsed, with an error testcase when no case could run.
async fn run(cases: Option<&Path>, mut args: RunArgs, plugin: bool) -> Exit {
    let sonobuoy = args.sonobuoy.then(SonobuoyResults::from_env);
    if let Some(results) = &sonobuoy {
        args.report_dir = results.dir.clone();
        args.junit = None;
        args.json = None;
    }
    let files = args.report_files();
    let (events_tx, reporting) = files.spawn(Some(Box::new(TerminalReporter::stderr())));
    let cancel_rx = runner::cancel_on_signal("deleting what this run created");
    let started = std::time::Instant::now();
    let mut cancelled = cancel_rx.clone();
    let problem = sonobuoy.as_ref().and_then(|s| s.problem.clone());
    let prepared = tokio::select! {
        p = async {
            match problem {
                Some(problem) => Err((problem, Exit::BadInput)),
                None => prepare(cases, &args, plugin).await.map_err(|e| (cluster::error_chain(&e), e.exit())),
            }
        } => p,
        _ = cancelled.wait_for(|c| *c) => Err(("interrupted before any case started".to_string(), Exit::Interrupted)),
    };
    let exit = match prepared {
        Err((reason, exit)) => {
            eprintln!("svcconf: error: {reason}");
            let seconds = started.elapsed().as_secs_f64();
            for event in Event::setup_failure(reason, seconds, exit == Exit::Interrupted) {
                let _ = events_tx.send(event);
            }
            drop(events_tx);
            exit
        }
        Ok(Prepared {
            plan,
            provider,
            fixtures,
        }) => {
            let deadlines = Deadlines::default();
            let clusters = Clusters::new(provider, deadlines.clone());
            runner::run(&plan, clusters, fixtures, &deadlines, events_tx, cancel_rx)
                .await
                .exit()
        }
    };
    let (_record, errors) = reporting.await.expect("reporter task");
    // sonobuoy's worker waits for this, whatever happened before.
    if let Some(results) = &sonobuoy {
        write_done(results, &files.junit);
    }
    if let Some(e) = errors.into_iter().next() {
        eprintln!("svcconf: error: {}", cluster::error_chain(&e));
        return Exit::BadInput;
    }
    eprintln!("reports: {files}");
    exit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Run(args) => *args,
            _ => panic!("not run"),
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
            "--kubernetes-version",
            "v1.36.3",
        ]);
        assert_eq!(
            args.target.proxy_mode,
            Some(Modes(vec![ProxyMode::Nftables, ProxyMode::Iptables]))
        );
        assert_eq!(args.report_files().junit, PathBuf::from("out/j.xml"));
        assert!(args.keep_cluster && args.sabotage);
        assert_eq!(args.target.image_map, Some(PathBuf::from("m.yaml")));
        assert_eq!(args.target.kubernetes_version.as_deref(), Some("v1.36.3"));
        assert!(args
            .filter
            .focus
            .as_ref()
            .unwrap()
            .is_match("routing/clusterip-basic"));
    }

    #[test]
    fn defaults_write_reports_under_the_report_dir() {
        let args = run_args(&["svcconf", "run"]);
        assert_eq!(args.target.proxy_mode, None);
        assert_eq!(
            args.report_files().junit,
            PathBuf::from("svcconf-report/junit.xml")
        );
        assert_eq!(
            args.report_files().json,
            Some(PathBuf::from("svcconf-report/report.json"))
        );
        assert_eq!(args.concurrency, 6);
        let args = run_args(&["svcconf", "run", "--report-dir", "out"]);
        assert_eq!(args.report_files().junit, PathBuf::from("out/junit.xml"));
    }

    #[test]
    fn rejects_bad_input_as_usage_errors() {
        for argv in [
            &["svcconf", "run", "--proxy-mode", "userspace"][..],
            &["svcconf", "run", "--proxy-mode", ""],
            &["svcconf", "run", "--focus", "("],
            &["svcconf", "run", "--provider", "minikube"],
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
    fn the_provider_follows_the_flags_then_kubectl_s_environment() {
        let target = |argv: &[&str]| run_args(argv).target;
        let kind = target(&["svcconf", "run", "--provider", "kind"]);
        assert_eq!(provider_kind(&kind, false).unwrap(), ProviderKind::Kind);
        assert_eq!(provider_kind(&kind, true).unwrap(), ProviderKind::Kind);
        let named = target(&["svcconf", "run", "--context", "prod"]);
        assert_eq!(
            provider_kind(&named, false).unwrap(),
            ProviderKind::Kubeconfig
        );
        let both = target(&["svcconf", "run", "--provider", "kind", "--kubeconfig", "k"]);
        assert!(provider_kind(&both, false).is_err());
        // As a kubectl plugin the cluster is kubectl's.
        let plain = target(&["svcconf", "run"]);
        assert_eq!(
            provider_kind(&plain, true).unwrap(),
            ProviderKind::Kubeconfig
        );
    }

    #[test]
    fn knows_when_it_runs_as_a_kubectl_plugin() {
        assert!(as_kubectl_plugin("/usr/local/bin/kubectl-svcconf"));
        assert!(!as_kubectl_plugin("/usr/local/bin/svcconf"));
        let mut help = Vec::new();
        let mut command = Cli::command()
            .name("kubectl svcconf")
            .bin_name("kubectl svcconf");
        command.write_help(&mut help).unwrap();
        assert!(
            String::from_utf8(help)
                .unwrap()
                .contains("Usage: kubectl svcconf [OPTIONS] <COMMAND>"),
            "help reads like kubectl's"
        );
    }

    #[test]
    fn filters_by_suite_and_case() {
        let (_, cases) = catalog(None).unwrap();
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
            .select(&cases)
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["clusterip-basic"]);
    }
}

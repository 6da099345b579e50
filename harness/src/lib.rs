//! svcconf checks Kubernetes Service networking on real clusters, in each
//! kube-proxy mode (iptables, nftables, ipvs), and writes JUnit.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! cluster  →  fixture  →  probe  →  verdict  →  report
//! (kind per   (YAML,      (in-pod   (expected    (terminal table,
//!  mode, or   server-side  exec)     vs observed) JUnit, JSON)
//!  kubeconfig) applied, waited on)
//! ```
//!
//! [`model`] is the pure vocabulary (cases, assertions, observations,
//! events); [`runner`] drives the stages (through one [`runner::Session`])
//! and emits [`model::Event`]s that the
//! [`report`]ers consume. Cases are data (`suites/cases/<suite>/<case>.yaml`)
//! and fixtures plain Kubernetes YAML (`fixtures/`), loaded by [`catalog`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use svcconf_harness::{catalog::Project, fixture::Fixtures, kube::manifest::ImageMap};
//! use svcconf_harness::model::{ProxyMode, Variant};
//! use svcconf_harness::report::ReportFiles;
//! use svcconf_harness::runner::{Clusters, Deadlines, Provider, Session};
//!
//! let project = Project::built_in();
//! let catalog = project.load_catalog()?;
//! let provider = Provider::Kubeconfig { source: Default::default(), kind: None, preload: vec![] };
//! let clusters = Clusters::new(provider, Deadlines::default());
//! let fixtures = Arc::new(Fixtures::new(project, ImageMap::default()));
//! // JUnit only, no progress shown (`Some(reporter)` adds one).
//! let files = ReportFiles { junit: "junit.xml".into(), json: None };
//! let (events, reporting) = files.spawn(None);
//! // The one API the CLI, `cargo test --features kind` and the bench drive.
//! let session = Session::new(clusters, fixtures, Deadlines::default(), events);
//! let runner = session.runner(ProxyMode::Iptables).await?;
//! let case = catalog.get("clusterip-basic").unwrap();
//! // `None`: the IPv4 run of a single-family cluster (no family in its name).
//! let result = session.run_case(&runner, case, Variant::Plain, None).await;
//! println!("{}: {:?}", result.key, result.outcome);
//! session.finish(false, None, false, std::time::Instant::now()).await;
//! let (_record, _errors) = reporting.await?;
//! # Ok(()) }
//! ```

pub mod audit;
pub mod backend;
pub mod catalog;
#[cfg(feature = "cli")]
pub mod cli;
pub mod cluster;
pub mod error;
pub mod fixture;
pub mod kube;
pub mod migrate;
pub mod model;
pub mod needs;
pub mod probe;
pub mod report;
pub mod resolve;
pub mod runner;
pub mod steps;
pub mod template;
pub mod verdict;

pub use error::{Error, Exit};

//! `svcconf audit`: a read-only look at a cluster for what its Service
//! networking uses that is deprecated or changes in a coming release
//! ([`crate::model::audit`] says what and why), written as a table, JSON and
//! JUnit. Nothing in the cluster is created or changed.

use std::path::Path;
use std::time::Instant;

use crate::cluster::{self, Kind, Kit, KubeconfigSource};
use crate::model::{self, Audit, FailOn};
use crate::report::{self, ReportError};
use crate::{Error, Exit};

/// Audits the cluster `source` names.
pub async fn audit(source: &KubeconfigSource) -> Result<Audit, Error> {
    let client = source.connect().await?;
    let started = Instant::now();
    // A kind cluster of this host: its nodes' rules are read with docker.
    let kit = Kit::load()?;
    let kind = Kind::locate(kit.as_ref()).ok();
    let docker = cluster::is_local_kind(&client, kind.as_ref())
        .await
        .then(|| cluster::command::which("docker"))
        .flatten();
    let (facts, version) = tokio::join!(
        cluster::audit::facts(&client, docker.as_deref()),
        client.apiserver_version()
    );
    Ok(Audit {
        cluster: source.name(),
        kubernetes_version: version.ok().map(|v| v.git_version),
        checks: model::audit(&facts),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Prints the table, writes the JSON and the JUnit, and says how to exit:
/// 2 when a check could not run (or a report could not be written), 1 when
/// a finding is at or above `fail_on`, else 0.
pub fn report(audit: &Audit, fail_on: FailOn, json: &Path, junit: &Path) -> Exit {
    print!("{}", report::audit_table(audit, fail_on));
    let write = |path: &Path, text: Result<String, ReportError>| {
        text.and_then(|t| report::write_file(path, t.as_bytes()))
    };
    let written = write(json, report::audit_json(audit, fail_on))
        .and_then(|()| write(junit, report::audit_junit(audit, fail_on)));
    if let Err(e) = written {
        eprintln!("svcconf: error: {}", cluster::error_chain(&e));
        return Exit::BadInput;
    }
    eprintln!("audit: wrote {} and {}", json.display(), junit.display());
    if audit.errors().next().is_some() {
        Exit::BadInput
    } else if audit.failing(fail_on) > 0 {
        Exit::Failed
    } else {
        Exit::Passed
    }
}

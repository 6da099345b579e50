//! The JSON report: the whole record (clusters, per-mode timings, every
//! result with its evidence) and the case × mode table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{write_file, ReportError, Reporter, RunRecord};
use crate::model::{CaseResult, Event};

pub struct JsonReporter {
    path: PathBuf,
}

impl JsonReporter {
    pub fn new(path: PathBuf) -> Self {
        JsonReporter { path }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    #[serde(flatten)]
    record: &'a RunRecord,
    counts: BTreeMap<&'static str, usize>,
    /// `suite/case[::sabotaged]` → mode → pass/FAIL/ERROR/skip.
    table: BTreeMap<String, BTreeMap<String, &'static str>>,
    results: Vec<CaseResult>,
}

pub fn json_report(record: &RunRecord) -> Result<String, ReportError> {
    let results = record.results();
    let mut table: BTreeMap<String, BTreeMap<String, &'static str>> = BTreeMap::new();
    for r in &results {
        table
            .entry(format!("{}/{}", r.key.suite, r.key.case_name()))
            .or_default()
            .insert(r.key.mode.to_string(), r.outcome.label());
    }
    let (p, f, e, s) = record.counts();
    let counts = BTreeMap::from([("passed", p), ("failed", f), ("errors", e), ("skipped", s)]);
    serde_json::to_string_pretty(&JsonReport {
        record,
        counts,
        table,
        results,
    })
    .map_err(ReportError::Json)
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &Event, record: &RunRecord) -> Result<(), ReportError> {
        if let Event::RunFinished { .. } = event {
            write_file(&self.path, json_report(record)?.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn carries_the_table_and_the_clusters() {
        let record = crate::report::junit::tests::sample_record(false);
        let v: serde_json::Value =
            serde_json::from_str(&super::json_report(&record).unwrap()).unwrap();
        assert_eq!(v["table"]["routing/clusterip-basic"]["iptables"], "pass");
        assert_eq!(v["table"]["routing/clusterip-basic"]["ipvs"], "skip");
        assert_eq!(v["table"]["routing/multi-port"]["iptables"], "FAIL");
        assert_eq!(
            v["modes"]["iptables"]["cluster"]["kubernetesVersion"],
            "v1.34.4"
        );
        assert_eq!(v["counts"]["errors"], 2);
        assert_eq!(v["results"].as_array().unwrap().len(), 5);
    }
}

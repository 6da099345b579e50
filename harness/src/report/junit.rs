//! JUnit XML through quick-junit, made valid against the Jenkins xUnit
//! schema (shared/junit-10.xsd): quick-junit always writes `skipped` on the
//! `<testsuites>` root, which that schema does not allow, so the root's
//! attributes are rewritten with quick-xml after serialization.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::{Reader, Writer};

use super::{write_file, ModeState, ReportError, Reporter, RunRecord};
use crate::model::{CaseOutcome, Event, ProxyMode};

/// Attributes the schema allows on `<testsuites>`.
const ROOT_ATTRIBUTES: [&str; 5] = ["name", "time", "tests", "failures", "errors"];

/// Writes the JUnit file when the run finishes (interrupted runs included).
pub struct JunitReporter {
    path: PathBuf,
}

impl JunitReporter {
    pub fn new(path: PathBuf) -> Self {
        JunitReporter { path }
    }
}

impl Reporter for JunitReporter {
    fn on_event(&mut self, event: &Event, record: &RunRecord) -> Result<(), ReportError> {
        if let Event::RunFinished { .. } = event {
            write_file(&self.path, junit_xml(record)?.as_bytes())?;
        }
        Ok(())
    }
}

/// One line, for attributes that must be one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The JUnit document for `record`: a testsuite per (mode, suite), a
/// testcase per case run, properties describing the cluster.
pub fn junit_xml(record: &RunRecord) -> Result<String, ReportError> {
    let mut suites: BTreeMap<(ProxyMode, String), TestSuite> = BTreeMap::new();
    for result in record.results() {
        let key = &result.key;
        let suite = suites
            .entry((key.mode, key.suite.clone()))
            .or_insert_with(|| new_suite(record, key.mode, &key.suite));
        let status = match &result.outcome {
            CaseOutcome::Passed => TestCaseStatus::success(),
            CaseOutcome::Failed { message } => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(one_line(message))
                    .set_type("expected-vs-observed")
                    .set_description(message.as_str());
                s
            }
            CaseOutcome::Error { message } => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(one_line(message))
                    .set_type("no-result")
                    .set_description(message.as_str());
                s
            }
            CaseOutcome::Skipped { reason } => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(one_line(reason));
                s
            }
        };
        let mut case = TestCase::new(key.case_name(), status);
        case.set_classname(format!("svcconf.{}.{}", key.mode, key.suite));
        case.set_time(Duration::from_secs_f64(result.seconds));
        let mut out = String::new();
        if let Some(ns) = &result.namespace {
            out.push_str(&format!("namespace: {ns}\n"));
        }
        out.push_str(&result.evidence);
        if !out.is_empty() {
            case.set_system_out(out);
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("svcconf");
    report.set_time(Duration::from_secs_f64(record.seconds));
    report.add_test_suites(suites.into_values());
    let xml = report
        .to_string()
        .map_err(|e| ReportError::Junit(Box::new(e)))?;
    schema_root(&xml)
}

fn new_suite(record: &RunRecord, mode: ProxyMode, suite: &str) -> TestSuite {
    let mut s = TestSuite::new(format!("{mode}.{suite}"));
    let mut props = vec![Property::new("proxyMode", mode.as_str())];
    match record.modes.get(&mode) {
        Some(ModeState::Ready { cluster, .. }) => {
            props.push(Property::new(
                "detectedProxyMode",
                cluster
                    .detected_mode
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ));
            props.push(Property::new(
                "kubernetesVersion",
                cluster.kubernetes_version.as_str(),
            ));
            props.push(Property::new("nodes", cluster.nodes.to_string()));
            props.push(Property::new("cluster", cluster.name.as_str()));
            props.push(Property::new("provider", cluster.provider.as_str()));
        }
        Some(ModeState::Unavailable { reason }) => {
            props.push(Property::new("unavailable", one_line(reason)))
        }
        Some(ModeState::ClusterFailed { reason }) => {
            props.push(Property::new("clusterFailed", one_line(reason)))
        }
        None => props.push(Property::new("cluster", "never brought up")),
    }
    let seconds: f64 = record
        .results()
        .iter()
        .filter(|r| r.key.mode == mode && r.key.suite == suite)
        .map(|r| r.seconds)
        .sum();
    s.set_time(Duration::from_secs_f64(seconds));
    s.add_properties(props);
    s
}

/// Copies the document, keeping only schema-valid attributes on the root.
fn schema_root(xml: &str) -> Result<String, ReportError> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| ReportError::Junit(e);
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::new());
    loop {
        match reader.read_event().map_err(|e| err(Box::new(e)))? {
            XmlEvent::Eof => break,
            XmlEvent::Start(start) if start.name().as_ref() == b"testsuites" => {
                let mut root = BytesStart::new("testsuites");
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| err(Box::new(e)))?;
                    if ROOT_ATTRIBUTES
                        .iter()
                        .any(|a| a.as_bytes() == attr.key.as_ref())
                    {
                        root.push_attribute(attr);
                    }
                }
                writer
                    .write_event(XmlEvent::Start(root))
                    .map_err(|e| err(Box::new(e)))?;
            }
            event => writer.write_event(event).map_err(|e| err(Box::new(e)))?,
        }
    }
    String::from_utf8(writer.into_inner()).map_err(|e| err(Box::new(e)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{CaseKey, CaseResult, ClusterInfo, Variant};
    use std::path::Path;
    use std::process::Command;

    fn key(mode: ProxyMode, case: &str, variant: Variant) -> CaseKey {
        CaseKey {
            mode,
            suite: "routing".into(),
            case: case.into(),
            variant,
        }
    }

    pub(crate) fn sample_record(interrupted: bool) -> RunRecord {
        let planned = vec![
            key(ProxyMode::Iptables, "clusterip-basic", Variant::Plain),
            key(ProxyMode::Iptables, "multi-port", Variant::Plain),
            key(ProxyMode::Iptables, "clusterip-basic", Variant::Sabotaged),
            key(ProxyMode::Nftables, "clusterip-basic", Variant::Plain),
            key(ProxyMode::Ipvs, "clusterip-basic", Variant::Plain),
        ];
        let mut r = RunRecord::default();
        r.apply(&Event::RunStarted {
            planned: planned.clone(),
        });
        r.apply(&Event::ModeUnavailable {
            mode: ProxyMode::Ipvs,
            reason: "ipvs mode is unavailable: kernel 6.18 has no IP_VS".into(),
        });
        let cluster = ClusterInfo {
            mode: ProxyMode::Iptables,
            detected_mode: Some("iptables (log of kube-system/kube-proxy-x)".into()),
            name: "svcconf-iptables".into(),
            provider: "kind".into(),
            kubernetes_version: "v1.34.4".into(),
            nodes: 3,
        };
        r.apply(&Event::ClusterReady {
            cluster,
            seconds: 80.0,
        });
        r.apply(&Event::CaseStarted {
            key: planned[0].clone(),
        });
        r.apply(&Event::CaseFinished {
            result: CaseResult {
                key: planned[0].clone(),
                outcome: CaseOutcome::Passed,
                seconds: 12.5,
                namespace: Some("svcconf-clusterip-basic-ab12c".into()),
                evidence: "check via-clusterip ...\n{\"ok\":30}".into(),
            },
        });
        r.apply(&Event::CaseFinished {
            result: CaseResult {
                key: planned[1].clone(),
                outcome: CaseOutcome::Failed { message: "via-443: expected all 10 answers from http://10.96.0.9:443/ on container port 8443, saw 8080 (first answer) <&>".into() },
                seconds: 9.0,
                namespace: None,
                evidence: "{\"a\": \"<b>\"}".into(),
            },
        });
        if !interrupted {
            r.apply(&Event::CaseFinished {
                result: CaseResult { key: planned[2].clone(), outcome: CaseOutcome::Error { message: "Deployment web in ns x: 1/3 available after 120s\npod web-1: ImagePullBackOff".into() }, seconds: 120.0, namespace: None, evidence: String::new() },
            });
        }
        r.apply(&Event::ClusterFailed {
            mode: ProxyMode::Nftables,
            reason: "kind create failed".into(),
        });
        r.apply(&Event::RunFinished {
            seconds: 300.0,
            interrupted,
        });
        r
    }

    fn xsd() -> PathBuf {
        std::env::var_os("SVCCONF_JUNIT_XSD")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/junit-10.xsd")
            })
    }

    fn validate(xml: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("junit.xml");
        std::fs::write(&file, xml).unwrap();
        let xsd = xsd();
        assert!(
            xsd.is_file(),
            "the JUnit schema is not at {} (set SVCCONF_JUNIT_XSD)",
            xsd.display()
        );
        let out = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&xsd)
            .arg(&file)
            .output()
            .expect("xmllint is needed to validate JUnit output (Debian: libxml2-utils)");
        assert!(
            out.status.success(),
            "xmllint rejected the JUnit file:\n{}\n{xml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn validates_against_the_jenkins_schema() {
        let xml = junit_xml(&sample_record(false)).unwrap();
        validate(&xml);
        assert!(
            !xml.contains("<testsuites name=\"svcconf\" tests=\"5\" skipped"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="kubernetesVersion" value="v1.34.4"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="nodes" value="3"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testsuite name="iptables.routing""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"name="clusterip-basic::sabotaged""#),
            "{xml}"
        );
        assert!(
            xml.contains("saw 8080 (first answer) &lt;&amp;&gt;"),
            "failure message carries expected vs observed:\n{xml}"
        );
        assert!(
            xml.contains(
                r#"<skipped message="ipvs mode is unavailable: kernel 6.18 has no IP_VS""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains("no result: no nftables cluster: kind create failed"),
            "{xml}"
        );
    }

    #[test]
    fn an_interrupted_run_still_reports_every_planned_case() {
        let record = sample_record(true);
        let xml = junit_xml(&record).unwrap();
        validate(&xml);
        assert!(
            xml.contains("no result: the run was interrupted before this case finished"),
            "{xml}"
        );
        assert_eq!(record.counts(), (1, 1, 2, 1));
    }
}

//! JUnit XML through quick-junit, made valid against the Jenkins xUnit
//! schema (junit-10.xsd, the strictest common consumer): quick-junit always
//! writes `skipped` on the `<testsuites>` root, which that schema does not
//! allow, so the root's attributes are rewritten with quick-xml after
//! serialization. The tests hold the output to that schema's rules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::{Reader, Writer};

use super::{write_file, ModeState, ReportError, Reporter, RunRecord};
use crate::model::{CaseKey, CaseOutcome, Event, IpFamily, ProxyMode};

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
pub(super) fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The JUnit document for `record`: a testsuite per (mode, suite), a
/// testcase per case run, properties describing the cluster.
pub fn junit_xml(record: &RunRecord) -> Result<String, ReportError> {
    let mut suites: BTreeMap<(ProxyMode, Option<IpFamily>, String), TestSuite> = BTreeMap::new();
    for result in record.results() {
        let key = &result.key;
        let suite = suites
            .entry((key.mode, key.family, key.suite.clone()))
            .or_insert_with(|| new_suite(record, key));
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
        case.set_classname(format!("svcconf.{}.{}", key.scope(), key.suite));
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
    if let Some(reason) = &record.setup_error {
        // CI shows a red test, not an empty report, when nothing could run.
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(one_line(reason))
            .set_type("setup")
            .set_description(reason.as_str());
        let mut case = TestCase::new("setup", s);
        case.set_classname("svcconf.setup");
        let mut suite = TestSuite::new("svcconf.setup");
        suite.add_test_case(case);
        suites.insert((ProxyMode::Iptables, None, String::new()), suite);
    }
    let mut report = Report::new("svcconf");
    report.set_time(Duration::from_secs_f64(record.seconds));
    report.add_test_suites(suites.into_values());
    let xml = report
        .to_string()
        .map_err(|e| ReportError::Junit(Box::new(e)))?;
    schema_root(&xml)
}

/// The testsuite of `key`'s mode, family and suite.
fn new_suite(record: &RunRecord, key: &CaseKey) -> TestSuite {
    let (mode, suite) = (key.mode, key.suite.as_str());
    let mut s = TestSuite::new(format!("{}.{suite}", key.scope()));
    let mut props = vec![Property::new("proxyMode", mode.as_str())];
    if let Some(family) = key.family {
        props.push(Property::new("ipFamily", family.as_str()));
    }
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
            props.push(Property::new("ipFamilies", cluster.describe_families()));
            // One property per node: who programs its Services, and how well.
            for node in cluster.dataplane.iter().flat_map(|d| &d.nodes) {
                let line = node.describe();
                let what = line.split_once(": ").map_or(line.as_str(), |(_, w)| w);
                props.push(Property::new(format!("node.{}", node.node), one_line(what)));
            }
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
        .filter(|r| r.key.mode == mode && r.key.family == key.family && r.key.suite == suite)
        .map(|r| r.seconds)
        .sum();
    s.set_time(Duration::from_secs_f64(seconds));
    s.add_properties(props);
    s
}

/// Copies the document, keeping only schema-valid attributes on the root.
pub(super) fn schema_root(xml: &str) -> Result<String, ReportError> {
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
    use crate::model::{CaseResult, ClusterInfo, Variant};

    fn key(mode: ProxyMode, case: &str, variant: Variant) -> CaseKey {
        CaseKey {
            mode,
            family: None,
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
            families: vec![],
            service_range: None,
            dataplane: Some(crate::model::Dataplane {
                nodes: vec![crate::model::NodeDataplane {
                    node: "svcconf-iptables-worker".into(),
                    proxy: crate::model::ServiceProxy::KubeProxy {
                        daemon_set: "kube-system/kube-proxy".into(),
                        pod: "kube-proxy-x".into(),
                    },
                    mode: Some("iptables".into()),
                    programmed: Some(vec!["iptables".into()]),
                    health: crate::model::ProxyHealth::Synced {
                        last_sync_seconds: 3.0,
                    },
                    warnings: vec![],
                }],
                seconds: 0.6,
            }),
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

    /// An element the Jenkins xUnit schema (junit-10.xsd) declares: the
    /// attributes it requires and allows, the children it may hold, and
    /// whether it holds text.
    struct Rule {
        required: &'static [&'static str],
        allowed: &'static [&'static str],
        children: &'static [&'static str],
        text: bool,
    }

    const OUTCOME: Rule = Rule {
        required: &[],
        allowed: &["type", "message"],
        children: &[],
        text: true,
    };
    const RERUN: Rule = Rule {
        required: &["type"],
        allowed: &["message"],
        children: &["stackTrace", "system-out", "system-err"],
        text: true,
    };
    const TEXT: Rule = Rule {
        required: &[],
        allowed: &[],
        children: &[],
        text: true,
    };

    fn rule(element: &str) -> Option<Rule> {
        Some(match element {
            "testsuites" => Rule {
                required: &[],
                allowed: &["name", "time", "tests", "failures", "errors"],
                children: &["testsuite"],
                text: false,
            },
            "testsuite" => Rule {
                required: &["name", "tests", "failures", "errors"],
                allowed: &[
                    "group",
                    "time",
                    "skipped",
                    "timestamp",
                    "hostname",
                    "id",
                    "package",
                    "file",
                    "log",
                    "url",
                ],
                children: &[
                    "testsuite",
                    "properties",
                    "testcase",
                    "system-out",
                    "system-err",
                ],
                text: false,
            },
            "properties" => Rule {
                required: &[],
                allowed: &[],
                children: &["property"],
                text: false,
            },
            "property" => Rule {
                required: &["name", "value"],
                allowed: &[],
                children: &[],
                text: false,
            },
            "testcase" => Rule {
                required: &["name"],
                allowed: &["time", "classname", "group"],
                children: &[
                    "skipped",
                    "error",
                    "failure",
                    "rerunFailure",
                    "rerunError",
                    "flakyFailure",
                    "flakyError",
                    "system-out",
                    "system-err",
                ],
                text: false,
            },
            "failure" | "error" | "skipped" => OUTCOME,
            "rerunFailure" | "rerunError" | "flakyFailure" | "flakyError" => RERUN,
            "system-out" | "system-err" | "stackTrace" => TEXT,
            _ => return None,
        })
    }

    /// Holds `xml` to junit-10.xsd's rules: the root, each element's place,
    /// its required and allowed attributes, text only where allowed, and
    /// the schema's time pattern.
    fn validate(xml: &str) {
        let time = regex::Regex::new(r"^(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?$").unwrap();
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<String> = Vec::new();
        let mut saw_root = false;
        loop {
            let event = reader
                .read_event()
                .unwrap_or_else(|e| panic!("not XML: {e}\n{xml}"));
            let (start, empty) = match &event {
                XmlEvent::Eof => break,
                XmlEvent::Start(s) => (s.clone(), false),
                XmlEvent::Empty(s) => (s.clone(), true),
                XmlEvent::End(_) => {
                    stack.pop();
                    continue;
                }
                XmlEvent::Text(t) => {
                    let text = String::from_utf8_lossy(t.as_ref()).trim().to_string();
                    if let Some(parent) = stack.last() {
                        assert!(
                            text.is_empty() || rule(parent).unwrap().text,
                            "<{parent}> may not hold text {text:?}\n{xml}"
                        );
                    }
                    continue;
                }
                _ => continue,
            };
            let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
            let this =
                rule(&name).unwrap_or_else(|| panic!("<{name}> is not in the schema\n{xml}"));
            match stack.last() {
                None => {
                    assert_eq!(name, "testsuites", "the root must be <testsuites>\n{xml}");
                    assert!(!saw_root, "two roots\n{xml}");
                    saw_root = true;
                }
                Some(parent) => assert!(
                    rule(parent).unwrap().children.contains(&name.as_str()),
                    "<{name}> may not be inside <{parent}>\n{xml}"
                ),
            }
            let attrs: Vec<(String, String)> = start
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    (
                        String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .unwrap()
                            .to_string(),
                    )
                })
                .collect();
            for required in this.required {
                assert!(
                    attrs.iter().any(|(k, _)| k == required),
                    "<{name}> lacks required attribute {required}\n{xml}"
                );
            }
            for (key, value) in &attrs {
                assert!(
                    this.required.contains(&key.as_str()) || this.allowed.contains(&key.as_str()),
                    "<{name}> may not carry attribute {key}\n{xml}"
                );
                if key == "time" && matches!(name.as_str(), "testsuites" | "testsuite") {
                    assert!(
                        time.is_match(value),
                        "<{name} time={value:?}> breaks the time pattern"
                    );
                }
            }
            if !empty {
                stack.push(name);
            }
        }
        assert!(saw_root && stack.is_empty(), "unbalanced document\n{xml}");
    }

    #[test]
    fn the_schema_check_rejects_what_the_schema_rejects() {
        let bad = [
            r#"<testsuites skipped="1"></testsuites>"#,
            r#"<testsuite name="a" tests="0" failures="0" errors="0"/>"#,
            r#"<testsuites><testsuite name="a" tests="1" failures="0"/></testsuites>"#,
            r#"<testsuites><testsuite name="a" tests="1" failures="0" errors="0"><testcase name="c"><properties/></testcase></testsuite></testsuites>"#,
            r#"<testsuites time="1.5s"></testsuites>"#,
        ];
        for xml in bad {
            let caught = std::panic::catch_unwind(|| validate(xml));
            assert!(caught.is_err(), "accepted {xml}");
        }
        validate(
            r#"<testsuites time="12.5"><testsuite name="a" tests="1" failures="1" errors="0"><properties><property name="p" value="v"/></properties><testcase name="c"><failure message="m" type="t">x</failure><system-out>o</system-out></testcase></testsuite></testsuites>"#,
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
            xml.contains(r#"<property name="node.svcconf-iptables-worker" value="kube-proxy iptables (DaemonSet kube-system/kube-proxy, pod kube-proxy-x); iptables rules; synced, last sync 3s ago"/>"#),
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

    #[test]
    fn a_run_that_could_not_start_reports_an_error_testcase() {
        let mut record = RunRecord::default();
        for event in [
            Event::RunStarted { planned: vec![] },
            Event::SetupFailed {
                reason: "cannot read kubeconfig KUBECONFIG=/nope".into(),
            },
            Event::RunFinished {
                seconds: 0.1,
                interrupted: false,
            },
        ] {
            record.apply(&event);
        }
        let xml = junit_xml(&record).unwrap();
        validate(&xml);
        assert!(
            xml.contains(r#"<testcase name="setup" classname="svcconf.setup""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<error message="cannot read kubeconfig KUBECONFIG=/nope" type="setup""#
            ),
            "{xml}"
        );
        assert_eq!(record.counts(), (0, 0, 1, 0));
    }
}

//! The reports of `svcconf audit`: a terminal table (one line per finding,
//! then what each failing one asks), JSON, and JUnit with one testcase per
//! finding (failed at or above `--fail-on`, so a pipeline gates on it), one
//! per check that found nothing, and an error per check that could not run.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use super::junit::{one_line, schema_root};
use super::ReportError;
use crate::model::{Audit, FailOn, Finding};

/// The table and the details of what fails, for a terminal.
pub fn audit_table(audit: &Audit, fail_on: FailOn) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "SEVERITY".into(),
        "CHECK".into(),
        "OBJECT".into(),
        "CHANGES".into(),
    ]];
    // The most pressing first.
    let mut findings: Vec<&Finding> = audit.findings().collect();
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in findings {
        rows.push([
            f.severity.to_string(),
            f.check.clone(),
            f.object.clone(),
            f.changes.clone(),
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    if audit.findings().next().is_some() {
        for r in &rows {
            out.push_str(&format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                r[0], r[1], r[2], r[3]
            ));
        }
        out.push('\n');
    }
    for f in audit.findings().filter(|f| fail_on.fails(f.severity)) {
        out.push_str(&details(f));
    }
    for c in audit.errors() {
        out.push_str(&format!(
            "check {} could not run: {}\n",
            c.check,
            c.error.as_deref().unwrap_or_default()
        ));
    }
    let findings = audit.findings().count();
    let ran = audit.checks.len() - audit.errors().count();
    out.push_str(&format!(
        "{findings} findings ({} at or above --fail-on {fail_on}) from {ran} of {} checks, {} could not run; {} in {:.1}s\n",
        audit.failing(fail_on),
        audit.checks.len(),
        audit.errors().count(),
        audit.cluster,
        audit.seconds
    ));
    out
}

fn details(f: &Finding) -> String {
    format!(
        "{} ({}, {}): {}\n  changes: {}\n  breaks:  {}\n  move:    {}\n",
        f.object, f.check, f.severity, f.uses, f.changes, f.breaks, f.action
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditJson<'a> {
    #[serde(flatten)]
    audit: &'a Audit,
    fail_on: String,
    failing: usize,
    findings: Vec<&'a Finding>,
}

pub fn audit_json(audit: &Audit, fail_on: FailOn) -> Result<String, ReportError> {
    serde_json::to_string_pretty(&AuditJson {
        audit,
        fail_on: fail_on.to_string(),
        failing: audit.failing(fail_on),
        findings: audit.findings().collect(),
    })
    .map_err(ReportError::Json)
}

pub fn audit_junit(audit: &Audit, fail_on: FailOn) -> Result<String, ReportError> {
    let mut suite = TestSuite::new("svcconf.audit");
    let mut props = vec![
        Property::new("cluster", audit.cluster.as_str()),
        Property::new("failOn", fail_on.to_string()),
    ];
    if let Some(v) = &audit.kubernetes_version {
        props.push(Property::new("kubernetesVersion", v.as_str()));
    }
    suite.add_properties(props);
    for check in &audit.checks {
        let classname = format!("svcconf.audit.{}", check.check);
        if let Some(error) = &check.error {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(one_line(error))
                .set_type("unread")
                .set_description(error.as_str());
            let mut case = TestCase::new(check.check.as_str(), s);
            case.set_classname(classname);
            suite.add_test_case(case);
            continue;
        }
        if check.findings.is_empty() {
            let mut case = TestCase::new(check.check.as_str(), TestCaseStatus::success());
            case.set_classname(classname);
            case.set_system_out(format!("none found: {}", check.about));
            suite.add_test_case(case);
            continue;
        }
        for f in &check.findings {
            let status = if fail_on.fails(f.severity) {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(one_line(&format!(
                    "{}: {}; {}",
                    f.object, f.uses, f.changes
                )))
                .set_type(f.severity.to_string())
                .set_description(details(f));
                s
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(format!("{}::{}", f.check, f.object), status);
            case.set_classname(classname.clone());
            case.set_system_out(details(f));
            suite.add_test_case(case);
        }
    }
    suite.set_time(Duration::from_secs_f64(audit.seconds));
    let mut report = Report::new("svcconf audit");
    report.set_time(Duration::from_secs_f64(audit.seconds));
    report.add_test_suite(suite);
    let xml = report
        .to_string()
        .map_err(|e| ReportError::Junit(Box::new(e)))?;
    schema_root(&xml)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CheckOutcome, Severity};

    fn audit() -> Audit {
        let finding = |severity, object: &str| Finding {
            check: "external-ips".into(),
            severity,
            object: object.into(),
            uses: "spec.externalIPs 192.0.2.1".into(),
            changes: "deprecated in v1.36".into(),
            breaks: "not routed".into(),
            action: "use a LoadBalancer".into(),
        };
        Audit {
            cluster: "kind-audit".into(),
            kubernetes_version: Some("v1.37.2".into()),
            checks: vec![
                CheckOutcome {
                    check: "external-ips".into(),
                    about: "Services with spec.externalIPs".into(),
                    findings: vec![finding(Severity::Deprecated, "Service a/b")],
                    error: None,
                },
                CheckOutcome {
                    check: "prefer-close".into(),
                    about: "PreferClose".into(),
                    findings: vec![],
                    error: None,
                },
                CheckOutcome {
                    check: "endpoints-v1".into(),
                    about: "Endpoints".into(),
                    findings: vec![],
                    error: Some("missing permission: verb list on resource endpoints".into()),
                },
            ],
            seconds: 0.4,
        }
    }

    #[test]
    fn junit_has_a_testcase_per_finding_failing_at_fail_on_and_an_error_per_unrun_check() {
        let xml = audit_junit(&audit(), "deprecated".parse().unwrap()).unwrap();
        assert!(
            xml.contains(r#"<testcase name="external-ips::Service a/b""#),
            "{xml}"
        );
        assert!(xml.contains(r#"<failure message="Service a/b: spec.externalIPs 192.0.2.1; deprecated in v1.36" type="deprecated">"#), "{xml}");
        assert!(xml.contains(r#"<testcase name="prefer-close""#));
        assert!(xml.contains(r#"<error message="missing permission"#));
        // The root as the schema allows it.
        assert!(
            xml.contains(r#"<testsuites name="svcconf audit" tests="3" failures="1" errors="1""#),
            "{xml}"
        );
        let lenient = audit_junit(&audit(), FailOn::Never).unwrap();
        assert!(!lenient.contains("<failure"));
    }

    #[test]
    fn the_table_names_each_finding_and_the_details_of_failing_ones() {
        let text = audit_table(&audit(), "removal".parse().unwrap());
        assert!(
            text.contains("deprecated  external-ips  Service a/b  deprecated in v1.36"),
            "{text}"
        );
        assert!(!text.contains("  move:"), "{text}");
        assert!(text.contains("check endpoints-v1 could not run: missing permission"));
        assert!(text.ends_with("1 findings (0 at or above --fail-on removal) from 2 of 3 checks, 1 could not run; kind-audit in 0.4s\n"), "{text}");
        let strict = audit_table(&audit(), "deprecated".parse().unwrap());
        assert!(strict.contains("  move:    use a LoadBalancer"));
    }
}

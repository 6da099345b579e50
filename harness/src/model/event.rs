//! What a run reports as it goes. The runner emits these; reporters (terminal,
//! JUnit, JSON) consume them, so a new reporter never touches the runner.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{IpFamily, ProxyMode};

/// Plain runs check the cluster; sabotaged runs check the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Plain,
    /// The case's sabotage is applied after its fixtures; the run passes
    /// only if the case then fails.
    Sabotaged,
}

/// One planned run of one case in one mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseKey {
    pub mode: ProxyMode,
    /// The family the case ran in, where the run has any but IPv4 alone
    /// (`None`: an IPv4-only run, whose names carry no family).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<IpFamily>,
    pub suite: String,
    pub case: String,
    pub variant: Variant,
}

impl CaseKey {
    /// The JUnit testcase name: the case name, with `::sabotaged` for the
    /// sabotaged variant.
    pub fn case_name(&self) -> String {
        match self.variant {
            Variant::Plain => self.case.clone(),
            Variant::Sabotaged => format!("{}::sabotaged", self.case),
        }
    }

    /// The mode, with the family where the run names one: `nftables`,
    /// `nftables.ipv6` (JUnit testsuite and classname).
    pub fn scope(&self) -> String {
        match self.family {
            Some(family) => format!("{}.{family}", self.mode),
            None => self.mode.to_string(),
        }
    }
}

impl fmt::Display for CaseKey {
    /// `<mode>[::<family>]::<suite>::<case>[::sabotaged]`, the test name
    /// filters match.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mode)?;
        if let Some(family) = self.family {
            write!(f, "::{family}")?;
        }
        write!(f, "::{}::{}", self.suite, self.case_name())
    }
}

/// How one run of a case ended, from the test's point of view (for a
/// sabotaged run, `Passed` means the sabotage was detected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum CaseOutcome {
    Passed,
    /// An expectation did not hold: one line, expected vs observed.
    Failed {
        message: String,
    },
    /// No result: the case could not be run to a verdict. Counts as a failure.
    Error {
        message: String,
    },
    Skipped {
        reason: String,
    },
}

impl CaseOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            CaseOutcome::Passed => "pass",
            CaseOutcome::Failed { .. } => "FAIL",
            CaseOutcome::Error { .. } => "ERROR",
            CaseOutcome::Skipped { .. } => "skip",
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, CaseOutcome::Passed | CaseOutcome::Skipped { .. })
    }

    /// The one line explaining a non-pass.
    pub fn message(&self) -> Option<&str> {
        match self {
            CaseOutcome::Passed => None,
            CaseOutcome::Failed { message } | CaseOutcome::Error { message } => Some(message),
            CaseOutcome::Skipped { reason } => Some(reason),
        }
    }
}

/// The result of one run of a case.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaseResult {
    pub key: CaseKey,
    pub outcome: CaseOutcome,
    pub seconds: f64,
    /// The namespace the case ran in, if it got that far.
    pub namespace: Option<String>,
    /// Probe evidence (commands and their JSON), for system-out.
    pub evidence: String,
}

impl CaseResult {
    /// A run that did not start, with why. The reason is also the evidence:
    /// JUnit consumers that drop the skip message (sonobuoy) still show it.
    pub fn skipped(key: CaseKey, reason: String) -> CaseResult {
        CaseResult {
            key,
            outcome: CaseOutcome::Skipped {
                reason: reason.clone(),
            },
            seconds: 0.0,
            namespace: None,
            evidence: reason,
        }
    }
}

/// What a reporter needs to know about the cluster a mode ran on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// The mode asked for.
    pub mode: ProxyMode,
    /// The mode kube-proxy says it runs, and how that was found out.
    pub detected_mode: Option<String>,
    pub name: String,
    /// `kind` or `kubeconfig`.
    pub provider: String,
    pub kubernetes_version: String,
    pub nodes: usize,
    /// The IP families cases run in (IPv4 first): those of every node's
    /// InternalIPs and of the Service range.
    #[serde(default)]
    pub families: Vec<IpFamily>,
    /// The default ServiceCIDR's CIDRs, primary first, where the API
    /// serves it (v1.33+) and it may be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_range: Option<Vec<String>>,
    /// Who programs Services on each node, read before the cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<super::Dataplane>,
}

impl ClusterInfo {
    /// The cluster's IP families and the one a Service gets when it names
    /// none (SingleStack in the Service range's primary family), for the
    /// reports.
    pub fn describe_families(&self) -> String {
        let families = self
            .families
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let families = if families.is_empty() {
            "none".to_string()
        } else {
            families
        };
        let Some(cidrs) = self.service_range.as_ref().filter(|c| !c.is_empty()) else {
            return format!("IP families {families}");
        };
        let primary = cidrs[0]
            .split('/')
            .next()
            .and_then(IpFamily::of)
            .map_or("?", |f| f.as_str());
        format!(
            "IP families {families}; Service range {} (a Service without ipFamilyPolicy gets SingleStack {primary})",
            cidrs.join(", ")
        )
    }
}

/// Everything a run reports, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "event")]
pub enum Event {
    /// Every run that will be attempted; a reporter turns any of them that
    /// never finishes into an error ("no result is a failure").
    RunStarted {
        planned: Vec<CaseKey>,
    },
    /// A mode cannot run on this host or cluster (e.g. ipvs without IP_VS):
    /// its cases are skipped with this reason.
    ModeUnavailable {
        mode: ProxyMode,
        reason: String,
    },
    /// The cluster for a mode could not be brought up: its cases error.
    ClusterFailed {
        mode: ProxyMode,
        reason: String,
    },
    ClusterReady {
        cluster: ClusterInfo,
        seconds: f64,
    },
    CaseStarted {
        key: CaseKey,
    },
    /// A running case moved on (`waiting for Deployment web`, `checks,
    /// attempt 3`): what a live view shows and a heartbeat names.
    CasePhase {
        key: CaseKey,
        phase: String,
    },
    /// Sent every few seconds while cases run, so reporters can show
    /// elapsed times and say what a long wait is waiting for.
    Tick,
    /// The run could not start any case (unreadable kubeconfig, unknown
    /// context, a mode asked for that cannot run here, ...): reporters
    /// still write their files, with this as an error.
    SetupFailed {
        reason: String,
    },
    /// Something slow is happening (a wait, a cluster being created).
    Progress {
        mode: Option<ProxyMode>,
        message: String,
    },
    CaseFinished {
        result: CaseResult,
    },
    RunFinished {
        seconds: f64,
        interrupted: bool,
    },
}

impl Event {
    /// What a run that could not start any case reports: it started with
    /// nothing planned, failed for `reason`, and finished.
    pub fn setup_failure(reason: String, seconds: f64, interrupted: bool) -> [Event; 3] {
        [
            Event::RunStarted { planned: vec![] },
            Event::SetupFailed { reason },
            Event::RunFinished {
                seconds,
                interrupted,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_name_the_default_a_service_gets() {
        let mut info = ClusterInfo {
            mode: ProxyMode::Nftables,
            detected_mode: None,
            name: "c".into(),
            provider: "kind".into(),
            kubernetes_version: "v1.37.2".into(),
            nodes: 3,
            families: vec![IpFamily::Ipv4, IpFamily::Ipv6],
            service_range: Some(vec!["fd00:10:96::/112".into(), "10.96.0.0/16".into()]),
            dataplane: None,
        };
        assert_eq!(
            info.describe_families(),
            "IP families ipv4, ipv6; Service range fd00:10:96::/112, 10.96.0.0/16 (a Service without ipFamilyPolicy gets SingleStack ipv6)"
        );
        info.service_range = None;
        info.families.clear();
        assert_eq!(info.describe_families(), "IP families none");
    }
}

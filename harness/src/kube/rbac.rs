//! A request RBAC refused (403 Forbidden), named as the permission that is
//! missing: verb, resource, API group and namespace, read from the API
//! server's own message, so a run under too small a role says what to add.

use std::sync::LazyLock;

use regex::Regex;

/// Where the permissions svcconf needs are written down, each with the
/// cases that need it.
pub const ROLE_FILE: &str = "deploy/rbac.yaml";

/// One permission the API server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPermission {
    /// Who asked, when the server said (its exec refusals do not).
    pub user: Option<String>,
    pub verb: String,
    /// `pods`, or with a subresource `pods/exec`.
    pub resource: String,
    /// Empty for the core group.
    pub group: String,
    /// `None`: cluster-scoped (or asked at the cluster scope).
    pub namespace: Option<String>,
}

impl std::fmt::Display for MissingPermission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core (\"\")"
        } else {
            &self.group
        };
        let scope = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "at the cluster scope".to_string(),
        };
        let user = match &self.user {
            Some(u) => format!(", for {u}"),
            None => String::new(),
        };
        write!(
            f,
            "missing permission: verb {} on resource {} of API group {group} {scope}{user} (403 Forbidden; {ROLE_FILE} lists what svcconf needs)",
            self.verb, self.resource
        )
    }
}

static FORBIDDEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"User "([^"]*)" cannot ([^ ]+) resource "([^"]+)" in API group "([^"]*)"(?: in the namespace "([^"]+)"| at the cluster scope)?"#,
    )
    .expect("valid regex")
});

/// The permission a 403 message of the API server names, e.g. `pods "x" is
/// forbidden: User "system:serviceaccount:s:svcconf" cannot create resource
/// "pods/exec" in API group "" in the namespace "n"`.
pub fn parse_forbidden(message: &str) -> Option<MissingPermission> {
    let c = FORBIDDEN.captures(message)?;
    Some(MissingPermission {
        user: Some(c[1].to_string()),
        verb: c[2].to_string(),
        resource: c[3].to_string(),
        group: c[4].to_string(),
        namespace: c.get(5).map(|m| m.as_str().to_string()),
    })
}

/// The missing permission behind `err`, when it is an API 403.
pub fn missing_permission(err: &kube::Error) -> Option<MissingPermission> {
    match err {
        kube::Error::Api(status) if status.code == 403 => parse_forbidden(&status.message),
        _ => None,
    }
}

/// `err` as the permission a request for `verb` on `resource` in
/// `namespace` lacked, when the server refused it (403) without saying
/// which (its refusals of exec's websocket upgrade name no verb).
pub fn refused(
    err: &kube::Error,
    verb: &str,
    resource: &str,
    namespace: &str,
) -> Option<MissingPermission> {
    match err {
        kube::Error::Api(status) if status.code == 403 => Some(
            parse_forbidden(&status.message).unwrap_or_else(|| MissingPermission {
                user: None,
                verb: verb.to_string(),
                resource: resource.to_string(),
                group: String::new(),
                namespace: Some(namespace.to_string()),
            }),
        ),
        _ => None,
    }
}

/// One line for a 403 whose message names no permission (a webhook or an
/// admission plugin refused): the status as the server gave it.
pub fn forbidden_line(err: &kube::Error) -> Option<String> {
    match err {
        kube::Error::Api(status) if status.code == 403 => {
            Some(match parse_forbidden(&status.message) {
                Some(p) => p.to_string(),
                None => format!("forbidden (403): {}", status.message),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_namespaced_permission() {
        let m = r#"pods "c-abc" is forbidden: User "system:serviceaccount:sonobuoy:svcconf" cannot create resource "pods/exec" in API group "" in the namespace "svcconf-dns-x1y2z""#;
        let p = parse_forbidden(m).unwrap();
        assert_eq!(
            p,
            MissingPermission {
                user: Some("system:serviceaccount:sonobuoy:svcconf".into()),
                verb: "create".into(),
                resource: "pods/exec".into(),
                group: "".into(),
                namespace: Some("svcconf-dns-x1y2z".into()),
            }
        );
        assert_eq!(
            p.to_string(),
            "missing permission: verb create on resource pods/exec of API group core (\"\") in namespace svcconf-dns-x1y2z, for system:serviceaccount:sonobuoy:svcconf (403 Forbidden; deploy/rbac.yaml lists what svcconf needs)"
        );
    }

    #[test]
    fn names_a_cluster_scoped_permission() {
        let m = r#"endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:sonobuoy:svcconf" cannot list resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope"#;
        let p = parse_forbidden(m).unwrap();
        assert_eq!(p.group, "discovery.k8s.io");
        assert_eq!(p.namespace, None);
        assert!(p.to_string().contains(
            "verb list on resource endpointslices of API group discovery.k8s.io at the cluster scope"
        ));
    }

    #[test]
    fn other_messages_are_not_permissions() {
        assert_eq!(parse_forbidden("namespaces \"x\" not found"), None);
        let status = kube::core::Status {
            code: 403,
            message: "admission webhook \"x\" denied the request".into(),
            ..Default::default()
        };
        let err = kube::Error::Api(Box::new(status));
        assert_eq!(missing_permission(&err), None);
        // What the API server says when exec's websocket upgrade is refused.
        let exec = kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            message: "pods \"svcconf-client-9t46h\" is forbidden: ".into(),
            ..Default::default()
        }));
        assert_eq!(
            refused(&exec, "create", "pods/exec", "svcconf-x").unwrap().to_string(),
            "missing permission: verb create on resource pods/exec of API group core (\"\") in namespace svcconf-x (403 Forbidden; deploy/rbac.yaml lists what svcconf needs)"
        );
        assert_eq!(
            forbidden_line(&err).unwrap(),
            "forbidden (403): admission webhook \"x\" denied the request"
        );
    }
}

//! Verdicts: each assertion judged against one observation, in one line of
//! expected vs observed. A missing or empty observation never passes.

use std::collections::BTreeSet;

use crate::model::{
    Assertion, DnsReport, ErrorKind, HttpReport, Observation, ProbeReport, WarningsReport,
};
use crate::template::{Facts, SliceFact};

/// Judges one assertion: `Ok` when it holds, else the one-line mismatch.
pub fn judge(assertion: &Assertion, obs: &Observation, facts: &Facts) -> Result<(), String> {
    match (assertion, &obs.report) {
        (Assertion::AllOk, ProbeReport::Http(r)) => all_ok(r),
        (Assertion::Backends { pods, count }, ProbeReport::Http(r)) => {
            backends(r, pods, *count, facts)
        }
        (Assertion::ServerPort(port), ProbeReport::Http(r)) => server_port(r, *port),
        (Assertion::AllFailWith(kind), ProbeReport::Http(r)) => all_fail_with(r, *kind),
        (Assertion::ClientIpIsClientPod, ProbeReport::Http(r)) => client_ip(r, &obs.client_ip),
        (Assertion::TcpResult(want), ProbeReport::Tcp(r)) => {
            if r.result == *want {
                Ok(())
            } else {
                Err(format!(
                    "expected tcp {} to be {}, saw {}",
                    r.target,
                    want.as_str(),
                    r.result.as_str()
                ))
            }
        }
        (Assertion::Rcode(want), ProbeReport::Dns(r)) => {
            let want = want.as_str();
            if r.rcode.eq_ignore_ascii_case(want) {
                Ok(())
            } else {
                let err = r
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                Err(format!(
                    "expected {} {} to answer {want}, saw {}{err}",
                    r.name,
                    r.record_type,
                    or_none(&r.rcode)
                ))
            }
        }
        (Assertion::Answers(want), ProbeReport::Dns(r)) => {
            let want = facts.render_set(want);
            let seen: BTreeSet<String> = r.answers.iter().cloned().collect();
            if want == seen {
                Ok(())
            } else {
                Err(format!(
                    "expected {} {} to answer exactly [{}], saw [{}] ({})",
                    r.name,
                    r.record_type,
                    join(&want),
                    join(&seen),
                    or_none(&r.rcode)
                ))
            }
        }
        (Assertion::Srv(want), ProbeReport::Dns(r)) => srv(r, &facts.render_set(want)),
        (Assertion::OneBackend, ProbeReport::Http(r)) => one_backend(r),
        (Assertion::AnsweredBy(host), ProbeReport::Http(r)) => answered_by(r, host),
        (Assertion::MinBackends(n), ProbeReport::Http(r)) => min_backends(r, *n),
        (Assertion::Status(code), ProbeReport::Http(r)) => status(r, *code),
        (Assertion::ClientIpNotClient, ProbeReport::Http(r)) => not_client_ip(r, &obs.client_ip),
        (
            Assertion::EndpointSliceShards {
                service,
                pods,
                min_slices,
                max_slices,
                max_endpoints,
            },
            ProbeReport::Http(r),
        ) => {
            let slices = facts
                .endpoint_slices
                .get(service)
                .map_or(&[][..], Vec::as_slice);
            let shape = Shards {
                min_slices: *min_slices,
                max_slices: *max_slices,
                max_endpoints: *max_endpoints,
            };
            shards(r, service, slices, ready_ips(facts, pods), &shape)
        }
        (Assertion::BackendsOnClientNode(pods), ProbeReport::Http(r)) => {
            near_client(r, pods, &obs.client_node, facts, Near::Node)
        }
        (Assertion::BackendsInClientZone(pods), ProbeReport::Http(r)) => {
            near_client(r, pods, &obs.client_node, facts, Near::Zone)
        }
        (Assertion::Warns(text), ProbeReport::Warnings(r)) => warns(r, text),
        // A case that loaded cannot get here: the catalog checks the fit.
        (assertion, report) => Err(format!(
            "assertion {} cannot judge a {} probe",
            assertion.name(),
            report.kind()
        )),
    }
}

fn warns(r: &WarningsReport, text: &str) -> Result<(), String> {
    if r.warnings.iter().any(|w| w.contains(text)) {
        return Ok(());
    }
    let saw = if r.warnings.is_empty() {
        "no warning".to_string()
    } else {
        format!(
            "only {}",
            join(r.warnings.iter().map(|w| format!("\"{w}\"")))
        )
    };
    Err(format!(
        "expected the API server to warn \"{text}\" on an update of {}, saw {saw}",
        r.object
    ))
}

fn ready_ips(facts: &Facts, selector: &str) -> BTreeSet<String> {
    facts
        .ready_pods
        .get(selector)
        .into_iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect()
}

/// How a Service's endpoints must be sharded.
struct Shards {
    min_slices: usize,
    max_slices: Option<usize>,
    max_endpoints: usize,
}

fn shards(
    r: &HttpReport,
    service: &str,
    slices: &[SliceFact],
    ready_pods: BTreeSet<String>,
    want: &Shards,
) -> Result<(), String> {
    let sizes = join(
        slices
            .iter()
            .map(|s| format!("{} ({})", s.name, s.endpoints.len())),
    );
    let n = slices.len();
    if n < want.min_slices || want.max_slices.is_some_and(|max| n > max) {
        let range = match want.max_slices {
            Some(max) if max == want.min_slices => format!("{max}"),
            Some(max) => format!("{}..{max}", want.min_slices),
            None => format!("at least {}", want.min_slices),
        };
        return Err(format!(
            "expected {range} EndpointSlices for Service {service}, saw {n}: [{sizes}]"
        ));
    }
    if let Some(big) = slices
        .iter()
        .find(|s| s.endpoints.len() > want.max_endpoints)
    {
        return Err(format!(
            "expected at most {} endpoints per EndpointSlice of Service {service}, {} holds {}",
            want.max_endpoints,
            big.name,
            big.endpoints.len()
        ));
    }
    let mut holders: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for slice in slices {
        for e in slice.endpoints.iter().filter(|e| e.ready) {
            holders.entry(&e.address).or_default().push(&slice.name);
        }
    }
    if let Some((address, in_slices)) = holders.iter().find(|(_, s)| s.len() > 1) {
        return Err(format!(
            "expected each ready address of Service {service} in one EndpointSlice, {address} is in {}",
            join(in_slices)
        ));
    }
    let seen: BTreeSet<String> = holders.keys().map(|a| a.to_string()).collect();
    if seen != ready_pods {
        return Err(format!(
            "expected the EndpointSlices of Service {service} to hold exactly the {} Ready pods' IPs, \
             missing [{}], not a Ready pod's [{}]",
            ready_pods.len(),
            join(ready_pods.difference(&seen)),
            join(seen.difference(&ready_pods))
        ));
    }
    // A slice left holding only terminating endpoints (after a scale down)
    // has no one to answer.
    let silent: Vec<&str> = slices
        .iter()
        .filter(|s| {
            let mut ready = s.endpoints.iter().filter(|e| e.ready).peekable();
            ready.peek().is_some()
                && !ready.any(|e| e.pod.as_ref().is_some_and(|p| r.backends.contains_key(p)))
        })
        .map(|s| s.name.as_str())
        .collect();
    if !silent.is_empty() {
        return Err(format!(
            "expected answers from backends of every EndpointSlice of Service {service}, none from [{}] \
             ({} backends answered {} of {} requests)",
            join(&silent),
            r.backends.len(),
            r.ok,
            r.count
        ));
    }
    Ok(())
}

/// How near the client a backend must be.
#[derive(Debug, Clone, Copy)]
enum Near {
    Node,
    Zone,
}

/// Every request answered by a `selector` pod on the client's node, or in
/// its zone.
fn near_client(
    r: &HttpReport,
    selector: &str,
    client_node: &str,
    facts: &Facts,
    near: Near,
) -> Result<(), String> {
    let zone_of = |node: &str| facts.zones.get(node).cloned().flatten();
    let (place, client_place) = match near {
        Near::Node => ("node", client_node.to_string()),
        Near::Zone => match zone_of(client_node) {
            Some(zone) => ("zone", zone),
            None => {
                return Err(format!(
                    "the client's node {client_node} has no topology.kubernetes.io/zone label: no zone to prefer"
                ))
            }
        },
    };
    if r.count == 0 || r.ok != r.count {
        return Err(format!(
            "expected {n}/{n} requests answered by pods {selector} in the client's {place} {client_place}, saw {ok}{errors}",
            n = r.count.max(1),
            ok = r.ok,
            errors = errors_suffix(r)
        ));
    }
    let pods = facts
        .ready_pods
        .get(selector)
        .map_or(&[][..], Vec::as_slice);
    let away: Vec<String> = r
        .backends
        .iter()
        .filter_map(|(name, n)| match pods.iter().find(|p| &p.name == name) {
            Some(p) => {
                let (here, label) = match near {
                    Near::Node => (p.node == client_node, p.node.clone()),
                    Near::Zone => {
                        let zone = zone_of(&p.node);
                        let label =
                            format!("{} (zone {})", p.node, zone.as_deref().unwrap_or("none"));
                        (zone.as_deref() == Some(client_place.as_str()), label)
                    }
                };
                (!here).then(|| format!("{name} x{n} on {label}"))
            }
            None => Some(format!("{name} x{n} (not a Ready pod {selector})")),
        })
        .collect();
    if away.is_empty() {
        return Ok(());
    }
    Err(format!(
        "expected every answer from pods {selector} in the client's {place} {client_place}, saw {}",
        join(&away)
    ))
}

/// SRV answers read as `PORT TARGET` (the probe prints
/// `PRIORITY WEIGHT PORT TARGET`), compared as a set.
fn srv(r: &DnsReport, want: &BTreeSet<String>) -> Result<(), String> {
    let seen: BTreeSet<String> = r
        .answers
        .iter()
        .map(|a| {
            let fields: Vec<&str> = a.split_whitespace().collect();
            match fields.as_slice() {
                [_, _, port, target] => format!("{port} {target}"),
                _ => format!("unreadable SRV {a:?}"),
            }
        })
        .collect();
    if !want.is_empty() && &seen == want {
        return Ok(());
    }
    Err(format!(
        "expected {} SRV to answer exactly [{}] (port target), saw [{}] ({})",
        r.name,
        join(want),
        join(&seen),
        or_none(&r.rcode)
    ))
}

fn one_backend(r: &HttpReport) -> Result<(), String> {
    let distinct = r.backends.values().filter(|n| **n > 0).count();
    all_answered_by(r, "one backend", distinct == 1)
}

fn answered_by(r: &HttpReport, host: &str) -> Result<(), String> {
    let only_host = r.backends.iter().all(|(b, n)| *n == 0 || b == host);
    all_answered_by(r, host, only_host)
}

/// Every request answered, and by `who` (`backends_hold`: the backends that
/// answered are the ones wanted).
fn all_answered_by(r: &HttpReport, who: &str, backends_hold: bool) -> Result<(), String> {
    if r.count > 0 && r.ok == r.count && backends_hold {
        return Ok(());
    }
    Err(format!(
        "expected all {} requests to {} answered by {who}, saw {} ({}/{} answered){}",
        r.count,
        or_none(&r.url),
        backend_tally(r),
        r.ok,
        r.count,
        errors_suffix(r)
    ))
}

fn backend_tally(r: &HttpReport) -> String {
    let seen: Vec<String> = r
        .backends
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(b, n)| format!("{b} x{n}"))
        .collect();
    if seen.is_empty() {
        "none".to_string()
    } else {
        seen.join(", ")
    }
}

fn min_backends(r: &HttpReport, min: usize) -> Result<(), String> {
    let distinct = r.backends.values().filter(|n| **n > 0).count();
    if r.count > 0 && r.ok == r.count && distinct >= min {
        return Ok(());
    }
    Err(format!(
        "expected {} requests to {} answered by at least {min} distinct backends, saw {distinct}: {} ({}/{} answered; sequence {}){}",
        r.count,
        or_none(&r.url),
        backend_tally(r),
        r.ok,
        r.count,
        r.sequence.join(" "),
        errors_suffix(r)
    ))
}

fn status(r: &HttpReport, code: u16) -> Result<(), String> {
    let want = code.to_string();
    let of_code = r.status_codes.get(&want).copied().unwrap_or(0);
    if r.count > 0 && of_code == r.count {
        return Ok(());
    }
    let seen: Vec<String> = r
        .status_codes
        .iter()
        .map(|(c, n)| format!("{c} x{n}"))
        .collect();
    let page = r
        .body_snippet
        .as_deref()
        .and_then(html_title)
        .map(|t| format!("; first page titled {t:?}"))
        .unwrap_or_default();
    Err(format!(
        "expected all {} requests to {} answered {code}, saw [{}]{}{page}",
        r.count,
        or_none(&r.url),
        seen.join(", "),
        errors_suffix(r)
    ))
}

/// The `<title>` of an HTML page (a WordPress error page says what failed
/// there), with the entity WordPress uses for its separator decoded.
fn html_title(body: &str) -> Option<String> {
    let start = body.find("<title>")? + "<title>".len();
    let end = start + body[start..].find("</title>")?;
    Some(body[start..end].trim().replace("&rsaquo;", "›"))
}

fn not_client_ip(r: &HttpReport, client_ip: &str) -> Result<(), String> {
    let seen: BTreeSet<&str> = r.client_ips.keys().map(String::as_str).collect();
    if !client_ip.is_empty() && r.count > 0 && r.ok == r.count && !seen.contains(client_ip) {
        return Ok(());
    }
    Err(format!(
        "expected backends to see a node address, not the client's own {}, saw [{}] ({}/{} answered){}",
        or_none(client_ip),
        join(&seen),
        r.ok,
        r.count,
        errors_suffix(r)
    ))
}

fn all_ok(r: &HttpReport) -> Result<(), String> {
    if r.count > 0 && r.ok == r.count && r.errors.total() == 0 {
        return Ok(());
    }
    let answered = if r.url.starts_with("udp://") {
        "answered"
    } else {
        "answered 200"
    };
    Err(format!(
        "expected {n}/{n} requests to {url} {answered}, saw {ok}{errors}",
        n = r.count.max(1),
        url = or_none(&r.url),
        ok = r.ok,
        errors = errors_suffix(r)
    ))
}

fn backends(r: &HttpReport, selector: &str, count: usize, facts: &Facts) -> Result<(), String> {
    let pods: BTreeSet<&str> = facts
        .ready_pods
        .get(selector)
        .map(|pods| pods.iter().map(|p| p.name.as_str()).collect())
        .unwrap_or_default();
    if pods.len() != count {
        return Err(format!(
            "expected {count} ready pods {selector} to compare against, found {}: [{}]",
            pods.len(),
            join(&pods)
        ));
    }
    let seen: BTreeSet<&str> = r
        .backends
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(b, _)| b.as_str())
        .collect();
    if seen == pods {
        return Ok(());
    }
    let tally = if r.backends.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = r
            .backends
            .iter()
            .map(|(b, n)| format!("{b} x{n}"))
            .collect();
        format!(": {}", list.join(", "))
    };
    let strangers: Vec<&str> = seen.difference(&pods).copied().collect();
    let strangers = if strangers.is_empty() {
        String::new()
    } else {
        format!("; not pods {selector}: {}", strangers.join(", "))
    };
    Err(format!(
        "expected {count} distinct backends ({selector}) over {} requests, saw {}{tally}{strangers}{}",
        r.count,
        seen.len(),
        errors_suffix(r)
    ))
}

fn server_port(r: &HttpReport, port: u16) -> Result<(), String> {
    let all_answered = r.count > 0 && r.ok == r.count;
    // A per-port tally covers every answer; without one, the first answer's
    // echo says which container port the Service port led to.
    let (seen, holds) = if !r.server_ports.is_empty() {
        let answers: u32 = r.server_ports.values().sum();
        let only = r.server_ports.keys().all(|p| p == &port.to_string());
        let seen = r
            .server_ports
            .iter()
            .map(|(p, n)| format!("{p} x{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        (seen, only && answers == r.ok)
    } else if let Some(first) = r.first_server_port() {
        (format!("{first} (first answer)"), first == port)
    } else {
        ("no echo reply".to_string(), false)
    };
    if all_answered && holds {
        return Ok(());
    }
    let answered = if all_answered {
        String::new()
    } else {
        format!(" ({}/{} answered)", r.ok, r.count)
    };
    Err(format!(
        "expected all {} answers from {} on container port {port}, saw {seen}{answered}{}",
        r.count,
        or_none(&r.url),
        errors_suffix(r)
    ))
}

fn all_fail_with(r: &HttpReport, kind: ErrorKind) -> Result<(), String> {
    let kind = kind.as_str();
    let of_kind = r
        .errors
        .nonzero()
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind))
        .map_or(0, |(_, n)| n);
    if r.count > 0 && of_kind == r.count {
        return Ok(());
    }
    Err(format!(
        "expected all {} requests to {} to fail with {kind}, saw {} answered{}",
        r.count,
        or_none(&r.url),
        r.ok,
        errors_suffix(r)
    ))
}

fn client_ip(r: &HttpReport, client_ip: &str) -> Result<(), String> {
    let seen: BTreeSet<&str> = r.client_ips.keys().map(String::as_str).collect();
    if !client_ip.is_empty() && seen.len() == 1 && seen.contains(client_ip) && r.ok == r.count {
        return Ok(());
    }
    Err(format!(
        "expected backends to see the client pod's IP {}, saw [{}]{}",
        or_none(client_ip),
        join(&seen),
        errors_suffix(r)
    ))
}

fn errors_suffix(r: &HttpReport) -> String {
    let errors = r.errors.nonzero();
    if errors.is_empty() {
        return String::new();
    }
    let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let first = r
        .first_error
        .as_deref()
        .map(|e| format!(", first: {e}"))
        .unwrap_or_default();
    format!("; errors: {}{first}", list.join(", "))
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "nothing"
    } else {
        s
    }
}

fn join<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorCounts, Rcode};
    use crate::template::PodFact;

    fn http(backends: &[(&str, u32)], ok: u32, count: u32) -> Observation {
        let report = HttpReport {
            url: "http://10.96.0.20:80/".into(),
            count,
            ok,
            backends: backends.iter().map(|(b, n)| (b.to_string(), *n)).collect(),
            server_ports: [("8080".to_string(), ok)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            client_ips: [("10.244.0.5".to_string(), ok)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            errors: ErrorCounts {
                refused: count - ok,
                ..Default::default()
            },
            first_error: (ok < count).then(|| "connection refused".to_string()),
            ..Default::default()
        };
        observation(ProbeReport::Http(report))
    }

    #[test]
    fn warns_finds_the_text_in_one_warning() {
        let report = |warnings: &[&str]| {
            observation(ProbeReport::Warnings(WarningsReport {
                object: "Service web".into(),
                warnings: warnings.iter().map(|w| w.to_string()).collect(),
            }))
        };
        let warns = Assertion::Warns("spec.externalIPs is deprecated".into());
        let seen = report(&[
            "spec.externalIPs is deprecated and may no longer be implemented in some clusters",
        ]);
        assert_eq!(judge(&warns, &seen, &facts()), Ok(()));
        assert_eq!(
            judge(&warns, &report(&[]), &facts()).unwrap_err(),
            "expected the API server to warn \"spec.externalIPs is deprecated\" on an update of Service web, saw no warning"
        );
        let other = judge(&warns, &report(&["a", "b"]), &facts()).unwrap_err();
        assert!(other.ends_with(r#"saw only "a", "b""#), "{other}");
    }

    fn observation(report: ProbeReport) -> Observation {
        Observation {
            client_pod: "client-abc".into(),
            client_node: "n0".into(),
            client_ip: "10.244.0.5".into(),
            command: vec![],
            report,
            raw: String::new(),
        }
    }

    fn facts() -> Facts {
        let pods = ["web-7c9f-a", "web-7c9f-b", "web-7c9f-c"]
            .iter()
            .map(|n| PodFact {
                name: n.to_string(),
                ip: String::new(),
                node: String::new(),
            })
            .collect();
        Facts {
            ready_pods: [("app=web".to_string(), pods)].into(),
            vars: [("clusterIP:web".into(), "10.96.0.20".into())].into(),
            ..Default::default()
        }
    }

    fn sharded(slices: &[&[(&str, &str)]]) -> Facts {
        let mut facts = Facts::default();
        let mut pods = Vec::new();
        let mut out = Vec::new();
        for (i, endpoints) in slices.iter().enumerate() {
            let endpoints = endpoints
                .iter()
                .map(|(pod, ip)| {
                    pods.push(PodFact {
                        name: pod.to_string(),
                        ip: ip.to_string(),
                        node: "w1".into(),
                    });
                    crate::template::EndpointFact {
                        address: ip.to_string(),
                        ready: true,
                        pod: Some(pod.to_string()),
                    }
                })
                .collect();
            out.push(SliceFact {
                name: format!("web-{i}"),
                endpoints,
            });
        }
        facts.ready_pods.insert("app=web".into(), pods);
        facts.endpoint_slices.insert("web".into(), out);
        facts
    }

    fn shards_assertion(min: usize, max: Option<usize>, per_slice: usize) -> Assertion {
        Assertion::EndpointSliceShards {
            service: "web".into(),
            pods: "app=web".into(),
            min_slices: min,
            max_slices: max,
            max_endpoints: per_slice,
        }
    }

    #[test]
    fn shards_hold_each_ready_pod_once_and_all_answer() {
        let facts = sharded(&[
            &[("a", "10.0.0.1"), ("b", "10.0.0.2")],
            &[("c", "10.0.0.3")],
        ]);
        let obs = http(&[("a", 5), ("c", 5)], 10, 10);
        assert_eq!(judge(&shards_assertion(2, None, 2), &obs, &facts), Ok(()));
        let too_big = judge(&shards_assertion(2, None, 1), &obs, &facts).unwrap_err();
        assert!(
            too_big.contains("at most 1 endpoints per EndpointSlice"),
            "{too_big}"
        );
        let one = judge(&shards_assertion(1, Some(1), 2), &obs, &facts).unwrap_err();
        assert!(
            one.starts_with("expected 1 EndpointSlices for Service web, saw 2"),
            "{one}"
        );
        let silent = judge(
            &shards_assertion(2, None, 2),
            &http(&[("a", 10)], 10, 10),
            &facts,
        );
        assert!(silent.unwrap_err().contains("none from [web-1]"));
        // A stale slice of another manager: an address that is no pod's.
        let mut stale = facts.clone();
        stale
            .endpoint_slices
            .get_mut("web")
            .unwrap()
            .push(SliceFact {
                name: "web-stale".into(),
                endpoints: vec![crate::template::EndpointFact {
                    address: "192.0.2.10".into(),
                    ready: true,
                    pod: None,
                }],
            });
        let err = judge(&shards_assertion(2, None, 2), &obs, &stale).unwrap_err();
        assert!(err.contains("not a Ready pod's [192.0.2.10]"), "{err}");
        let mut dup = facts;
        dup.endpoint_slices.get_mut("web").unwrap()[1]
            .endpoints
            .push(crate::template::EndpointFact {
                address: "10.0.0.1".into(),
                ready: true,
                pod: Some("a".into()),
            });
        let err = judge(&shards_assertion(2, None, 2), &obs, &dup).unwrap_err();
        assert!(err.contains("10.0.0.1 is in web-0, web-1"), "{err}");
    }

    /// [`facts`] with the i-th app=web pod on node `node(i)`.
    fn facts_on_nodes(node: impl Fn(usize) -> String) -> Facts {
        let mut facts = facts();
        for (i, pod) in facts
            .ready_pods
            .get_mut("app=web")
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            pod.node = node(i);
        }
        facts
    }

    #[test]
    fn node_preference_names_the_backends_away_from_the_client() {
        let facts = facts_on_nodes(|i| format!("w{}", i % 2));
        let local = Assertion::BackendsOnClientNode("app=web".into());
        let mut obs = http(&[("web-7c9f-a", 10), ("web-7c9f-c", 10)], 20, 20);
        obs.client_node = "w0".into();
        assert_eq!(judge(&local, &obs, &facts), Ok(()));
        obs.client_node = "w1".into();
        let err = judge(&local, &obs, &facts).unwrap_err();
        assert!(err.contains("web-7c9f-a x10 on w0"), "{err}");
        let stranger = http(&[("other", 20)], 20, 20);
        let err = judge(&local, &stranger, &facts).unwrap_err();
        assert!(err.contains("not a Ready pod app=web"), "{err}");
    }

    #[test]
    fn zone_preference_compares_the_nodes_zones() {
        let mut facts = facts_on_nodes(|i| format!("w{i}"));
        let zoned = Assertion::BackendsInClientZone("app=web".into());
        // w0 and w1 share zone-a; w2 is alone in zone-b.
        let obs = |client: &str| {
            let mut o = http(&[("web-7c9f-a", 10), ("web-7c9f-b", 10)], 20, 20);
            o.client_node = client.into();
            o
        };
        let err = judge(&zoned, &obs("w0"), &facts).unwrap_err();
        assert!(
            err.contains("has no topology.kubernetes.io/zone label"),
            "{err}"
        );
        for (node, zone) in [("w0", "zone-a"), ("w1", "zone-a"), ("w2", "zone-b")] {
            facts.zones.insert(node.into(), Some(zone.into()));
        }
        assert_eq!(judge(&zoned, &obs("w1"), &facts), Ok(()));
        let err = judge(&zoned, &obs("w2"), &facts).unwrap_err();
        assert!(
            err.contains("in the client's zone zone-b, saw web-7c9f-a x10 on w0 (zone zone-a)"),
            "{err}"
        );
    }

    fn backends3() -> Assertion {
        Assertion::Backends {
            pods: "app=web".into(),
            count: 3,
        }
    }

    #[test]
    fn every_backend_answering_passes() {
        let obs = http(
            &[("web-7c9f-a", 10), ("web-7c9f-b", 12), ("web-7c9f-c", 8)],
            30,
            30,
        );
        assert_eq!(judge(&backends3(), &obs, &facts()), Ok(()));
        assert_eq!(judge(&Assertion::AllOk, &obs, &facts()), Ok(()));
        assert_eq!(judge(&Assertion::ServerPort(8080), &obs, &facts()), Ok(()));
        assert_eq!(
            judge(&Assertion::ClientIpIsClientPod, &obs, &facts()),
            Ok(())
        );
    }

    #[test]
    fn one_backend_says_expected_and_seen() {
        let obs = http(&[("web-7c9f-a", 30)], 30, 30);
        let msg = judge(&backends3(), &obs, &facts()).unwrap_err();
        assert_eq!(
            msg,
            "expected 3 distinct backends (app=web) over 30 requests, saw 1: web-7c9f-a x30"
        );
    }

    #[test]
    fn no_answers_fail_every_http_assertion() {
        let obs = http(&[], 0, 30);
        let f = facts();
        for a in [
            Assertion::AllOk,
            backends3(),
            Assertion::ServerPort(8080),
            Assertion::ClientIpIsClientPod,
        ] {
            let msg = judge(&a, &obs, &f).unwrap_err();
            assert!(
                msg.contains("errors: refused 30, first: connection refused"),
                "{msg}"
            );
        }
        assert_eq!(
            judge(&Assertion::AllOk, &obs, &f).unwrap_err(),
            "expected 30/30 requests to http://10.96.0.20:80/ answered 200, saw 0; errors: refused 30, first: connection refused"
        );
        assert_eq!(
            judge(&Assertion::AllFailWith(ErrorKind::Refused), &obs, &f),
            Ok(())
        );
        assert!(judge(&Assertion::ServerPort(8080), &obs, &f)
            .unwrap_err()
            .contains("(0/30 answered)"));
    }

    #[test]
    fn an_empty_report_is_not_a_pass() {
        let obs = observation(ProbeReport::Http(HttpReport::default()));
        let f = facts();
        assert!(judge(&Assertion::AllOk, &obs, &f).is_err());
        assert!(judge(&Assertion::ServerPort(8080), &obs, &f).is_err());
        assert!(judge(&Assertion::AllFailWith(ErrorKind::Refused), &obs, &f).is_err());
        let dns = observation(ProbeReport::Dns(DnsReport::default()));
        assert!(judge(&Assertion::Rcode(Rcode::NoError), &dns, &f).is_err());
    }

    #[test]
    fn wrong_port_and_strangers_are_named() {
        let obs = http(&[("web-7c9f-a", 10), ("db-1", 20)], 30, 30);
        let msg = judge(&backends3(), &obs, &facts()).unwrap_err();
        assert!(msg.ends_with("; not pods app=web: db-1"), "{msg}");
        let msg = judge(&Assertion::ServerPort(8443), &obs, &facts()).unwrap_err();
        assert_eq!(msg, "expected all 30 answers from http://10.96.0.20:80/ on container port 8443, saw 8080 x30");
    }

    #[test]
    fn server_port_falls_back_to_the_first_echo() {
        let mut obs = http(&[("web-7c9f-a", 10)], 10, 10);
        let ProbeReport::Http(r) = &mut obs.report else {
            unreachable!()
        };
        r.server_ports.clear();
        r.body_snippet = Some(r#"{"hostname":"web-7c9f-a","podIP":"10.244.1.2","clientIP":"10.244.0.5","clientPort":40000,"serverPort":8443,"path":"/"}"#.into());
        assert_eq!(judge(&Assertion::ServerPort(8443), &obs, &facts()), Ok(()));
        let msg = judge(&Assertion::ServerPort(8080), &obs, &facts()).unwrap_err();
        assert!(
            msg.ends_with("on container port 8080, saw 8443 (first answer)"),
            "{msg}"
        );
    }

    #[test]
    fn too_few_ready_pods_is_a_mismatch_not_a_pass() {
        let mut f = facts();
        f.ready_pods.get_mut("app=web").unwrap().pop();
        let obs = http(&[("web-7c9f-a", 15), ("web-7c9f-b", 15)], 30, 30);
        let msg = judge(&backends3(), &obs, &f).unwrap_err();
        assert!(
            msg.starts_with("expected 3 ready pods app=web to compare against, found 2"),
            "{msg}"
        );
    }

    fn dns(name: &str, t: &str, answers: &[&str]) -> Observation {
        observation(ProbeReport::Dns(DnsReport {
            name: name.into(),
            record_type: t.into(),
            rcode: if answers.is_empty() {
                "NXDOMAIN"
            } else {
                "NOERROR"
            }
            .into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }))
    }

    #[test]
    fn multi_valued_placeholders_expand_into_sets() {
        let mut f = facts();
        f.vars
            .insert("podIPs:app=web".into(), "10.244.1.2,10.244.2.3".into());
        f.vars.insert("podIPs:app=none".into(), String::new());
        let want = vec!["${podIPs:app=web}".to_string()];
        let obs = dns("web", "A", &["10.244.1.2", "10.244.2.3"]);
        assert_eq!(judge(&Assertion::Answers(want.clone()), &obs, &f), Ok(()));
        let obs = dns("web", "A", &["10.244.1.2", "10.244.2.3", "10.244.2.9"]);
        assert_eq!(
            judge(&Assertion::Answers(want), &obs, &f).unwrap_err(),
            "expected web A to answer exactly [10.244.1.2, 10.244.2.3], saw [10.244.1.2, 10.244.2.3, 10.244.2.9] (NOERROR)"
        );
        assert!(f.render_set(&["${podIPs:app=none}".into()]).is_empty());
    }

    #[test]
    fn srv_compares_port_and_target_only() {
        let f = facts();
        let obs = dns(
            "_http._tcp.web.ns.svc.cluster.local",
            "SRV",
            &["0 100 80 web.ns.svc.cluster.local."],
        );
        let want = |s: &str| Assertion::Srv(vec![s.to_string()]);
        assert_eq!(
            judge(&want("80 web.ns.svc.cluster.local."), &obs, &f),
            Ok(())
        );
        assert_eq!(
            judge(&want("8080 web.ns.svc.cluster.local."), &obs, &f).unwrap_err(),
            "expected _http._tcp.web.ns.svc.cluster.local SRV to answer exactly [8080 web.ns.svc.cluster.local.] (port target), saw [80 web.ns.svc.cluster.local.] (NOERROR)"
        );
        let none = dns("_http._tcp.web", "SRV", &[]);
        assert!(judge(&want("80 web."), &none, &f)
            .unwrap_err()
            .ends_with("saw [] (NXDOMAIN)"));
        assert!(judge(&Assertion::Srv(vec![]), &none, &f).is_err());
    }

    #[test]
    fn min_backends_counts_distinct_answering_backends() {
        let f = facts();
        let moved = http(&[("web-7c9f-a", 4), ("web-7c9f-b", 2)], 6, 6);
        assert_eq!(judge(&Assertion::MinBackends(2), &moved, &f), Ok(()));
        let stuck = http(&[("web-7c9f-a", 6)], 6, 6);
        let msg = judge(&Assertion::MinBackends(2), &stuck, &f).unwrap_err();
        assert!(
            msg.starts_with("expected 6 requests to http://10.96.0.20:80/ answered by at least 2 distinct backends, saw 1: web-7c9f-a x6"),
            "{msg}"
        );
    }

    #[test]
    fn status_and_masqueraded_source() {
        let f = facts();
        let mut obs = http(&[], 2, 2);
        let ProbeReport::Http(r) = &mut obs.report else {
            unreachable!()
        };
        r.status_codes.insert("503".into(), 2);
        assert_eq!(judge(&Assertion::Status(503), &obs, &f), Ok(()));
        assert_eq!(
            judge(&Assertion::Status(200), &obs, &f).unwrap_err(),
            "expected all 2 requests to http://10.96.0.20:80/ answered 200, saw [503 x2]"
        );
        let ProbeReport::Http(r) = &mut obs.report else {
            unreachable!()
        };
        r.body_snippet =
            Some("<html>\n<head>\n\t\t<title>WordPress &rsaquo; Error</title>\n".into());
        assert!(judge(&Assertion::Status(200), &obs, &f)
            .unwrap_err()
            .ends_with("saw [503 x2]; first page titled \"WordPress › Error\""));
        // The fake backend saw 10.244.0.5, the client's own address.
        let own = http(&[("web-7c9f-a", 3)], 3, 3);
        assert!(judge(&Assertion::ClientIpNotClient, &own, &f)
            .unwrap_err()
            .starts_with("expected backends to see a node address, not the client's own 10.244.0.5, saw [10.244.0.5]"));
        let mut masq = own.clone();
        masq.client_ip = "172.18.0.1".into();
        assert_eq!(judge(&Assertion::ClientIpNotClient, &masq, &f), Ok(()));
    }

    #[test]
    fn one_backend_holds_only_for_a_single_answering_backend() {
        let f = facts();
        let sticky = http(&[("web-7c9f-a", 30)], 30, 30);
        assert_eq!(judge(&Assertion::OneBackend, &sticky, &f), Ok(()));
        let spread = http(&[("web-7c9f-a", 20), ("web-7c9f-b", 10)], 30, 30);
        assert_eq!(
            judge(&Assertion::OneBackend, &spread, &f).unwrap_err(),
            "expected all 30 requests to http://10.96.0.20:80/ answered by one backend, saw web-7c9f-a x20, web-7c9f-b x10 (30/30 answered)"
        );
        let none = http(&[], 0, 30);
        assert!(judge(&Assertion::OneBackend, &none, &f)
            .unwrap_err()
            .contains("saw none (0/30 answered); errors: refused 30"));
    }

    #[test]
    fn answered_by_holds_only_when_that_server_answered_every_request() {
        let f = facts();
        let proxied = http(&[("balancer", 16)], 16, 16);
        let by = Assertion::AnsweredBy("balancer".into());
        assert_eq!(judge(&by, &proxied, &f), Ok(()));
        let short_circuited = http(&[("web-7c9f-a", 9), ("web-7c9f-b", 7)], 16, 16);
        assert_eq!(
            judge(&by, &short_circuited, &f).unwrap_err(),
            "expected all 16 requests to http://10.96.0.20:80/ answered by balancer, saw web-7c9f-a x9, web-7c9f-b x7 (16/16 answered)"
        );
        assert!(judge(&by, &http(&[], 0, 16), &f).is_err());
    }

    #[test]
    fn dns_answers_are_compared_as_rendered_sets() {
        let report = DnsReport {
            name: "web".into(),
            record_type: "A".into(),
            rcode: "NOERROR".into(),
            answers: vec!["10.96.0.20".into()],
            ..Default::default()
        };
        let obs = observation(ProbeReport::Dns(report));
        let f = facts();
        assert_eq!(
            judge(
                &Assertion::Answers(vec!["${clusterIP:web}".into()]),
                &obs,
                &f
            ),
            Ok(())
        );
        let msg = judge(&Assertion::Answers(vec!["10.96.0.21".into()]), &obs, &f).unwrap_err();
        assert_eq!(
            msg,
            "expected web A to answer exactly [10.96.0.21], saw [10.96.0.20] (NOERROR)"
        );
        assert!(judge(&Assertion::AllOk, &obs, &f)
            .unwrap_err()
            .contains("cannot judge a dns probe"));
    }
}

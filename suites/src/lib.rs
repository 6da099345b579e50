//! svcconf's cases. Each case is one declaration under `cases/<suite>/` and
//! the fixtures it names under `../fixtures/`; this crate loads them, checks
//! them (unit tests, no cluster), and runs them on kind clusters through
//! `cargo test --features kind` (tests/kind.rs).
//!
//! Adding a case: write `cases/<suite>/<name>.yaml` (name, fixtures, ready,
//! checks, sabotage) and its fixture file; `cargo test` then checks that the
//! name is unique and every fixture parses.

use std::path::Path;

use svcconf_harness::catalog::{CatalogError, Project};
use svcconf_harness::cluster::{self, docker_has_image, Kind, Kit};
use svcconf_harness::fixture::{Fixtures, PROBE_IMAGE};
use svcconf_harness::kube::manifest::ImageMap;
use svcconf_harness::model::{Catalog, IpFamilies, UnknownIpFamily};
use svcconf_harness::runner::Provider;

/// The catalog these cases are compiled into.
pub fn project() -> Result<Project, CatalogError> {
    Ok(Project::built_in())
}

/// Every case, validated.
pub fn catalog() -> Result<Catalog, CatalogError> {
    project()?.load_catalog()
}

/// The fixtures `cargo test --features kind` and the bench run: the kit's
/// probe image unless `SVCCONF_PROBE_IMAGE` names another, and the kit's
/// stand-ins for the public application images (offline).
pub fn fixtures(project: &Project, kit: Option<&Kit>) -> Fixtures {
    let mut images = ImageMap::default();
    match (
        std::env::var("SVCCONF_PROBE_IMAGE").ok(),
        kit.and_then(|k| k.images.probe.clone()),
    ) {
        (Some(image), _) | (None, Some(image)) => images.insert(PROBE_IMAGE, &image),
        (None, None) => {}
    }
    for (from, to) in kit.iter().flat_map(|k| k.image_map.iter()) {
        images.insert_default(from, to);
    }
    Fixtures::new(project.clone(), images)
}

/// kind clusters as the tests and the bench make them: the kit's node image
/// of the Kubernetes version `SVCCONF_KUBERNETES_VERSION` names (the kit's
/// default when unset), unless `SVCCONF_NODE_IMAGE` names an image. Every
/// case runs the probe image, so it is loaded with the cluster; the others
/// (WordPress, MySQL) are loaded by the first case that runs them.
pub async fn kind_provider(
    project: &Project,
    kit: Option<&Kit>,
    fixtures: &Fixtures,
    docker: &Path,
) -> Result<Provider, String> {
    let kind = Kind::locate(kit).map_err(|e| cluster::error_chain(&e))?;
    let mut preload = Vec::new();
    let probe = fixtures.image_map().resolve(PROBE_IMAGE).to_string();
    if docker_has_image(docker, &probe).await {
        preload.push(probe);
    }
    let node_image = cluster::node_image(
        kit,
        env_value("SVCCONF_NODE_IMAGE").as_deref(),
        env_value("SVCCONF_KUBERNETES_VERSION").as_deref(),
    )
    .map_err(|e| e.to_string())?;
    Ok(Provider::Kind {
        kind,
        node_image,
        preload,
        configs: project.clone(),
        ip_family: ip_family()?,
    })
}

/// `SVCCONF_IP_FAMILY` (ipv4, ipv6, dual; default ipv4): the clusters'
/// IP families, every case run once per family.
pub fn ip_family() -> Result<IpFamilies, String> {
    match env_value("SVCCONF_IP_FAMILY") {
        Some(v) => v
            .parse()
            .map_err(|e: UnknownIpFamily| format!("SVCCONF_IP_FAMILY: {e}")),
        None => Ok(IpFamilies::Ipv4),
    }
}

/// A set, non-empty environment variable.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_loads_with_unique_names() {
        let catalog =
            catalog().unwrap_or_else(|e| panic!("{}", svcconf_harness::cluster::error_chain(&e)));
        let names: Vec<&str> = catalog.cases().iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"clusterip-basic") && names.contains(&"multi-port"),
            "{names:?}"
        );
    }

    #[test]
    fn fixtures_run_the_probe_image_and_only_the_apps_their_case_names() {
        let mut map = ImageMap::default();
        map.insert(PROBE_IMAGE, "svcconf/probe:test");
        let fixtures = Fixtures::new(project().unwrap(), map);
        let catalog = catalog().unwrap();
        for case in catalog.cases() {
            let images = fixtures.images([case]).unwrap();
            let apps = case.suite == "apps";
            assert_eq!(
                images.iter().any(|i| i != "svcconf/probe:test"),
                apps,
                "{}: {images:?}",
                case.id()
            );
        }
    }

    #[test]
    fn every_case_has_a_sabotage_that_changes_something() {
        for case in catalog().unwrap().cases() {
            let patches = case.sabotage.patch.iter().all(|p| p.merge.is_object());
            assert!(
                patches && (case.sabotage.patch.is_some() || !case.sabotage.actions.is_empty()),
                "{}: sabotage changes nothing",
                case.id()
            );
            assert!(
                !case.sabotage.settle.is_empty(),
                "{}: sabotage must say what to wait for",
                case.id()
            );
        }
    }
}

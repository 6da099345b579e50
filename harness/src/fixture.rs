//! The fixture engine: a case's objects (its fixture files plus the client
//! DaemonSet), images mapped, applied into the case's namespace.

use serde_json::Value;

use crate::catalog::{CatalogError, Project};
use crate::kube::manifest::{self, ImageMap};
use crate::model::Case;

/// The harness's client pods: one `svcconf-probe serve` per node, so a
/// check can pick a client on the node it means.
pub const CLIENTS_FIXTURE: &str = "common/clients.yaml";
/// The DaemonSet that fixture declares.
pub const CLIENTS_DAEMONSET: &str = "svcconf-client";
/// The image every fixture names for the probe; the image map (by default
/// the kit's probe image) says what actually runs.
pub const PROBE_IMAGE: &str = "svcconf/probe:dev";
/// svcconf's own image (a static binary `FROM scratch`, uid 65532), for
/// runs inside the cluster (`deploy/`: a Job, the sonobuoy plugin); the
/// image map says what is actually pulled (by default the kit's).
pub const SVCCONF_IMAGE: &str = "svcconf/svcconf:dev";

pub struct Fixtures {
    project: Project,
    images: ImageMap,
}

impl Fixtures {
    pub fn new(project: Project, images: ImageMap) -> Self {
        Fixtures { project, images }
    }

    pub fn project(&self) -> &Project {
        &self.project
    }

    pub fn image_map(&self) -> &ImageMap {
        &self.images
    }

    /// Every object of `case`, in apply order, images mapped.
    pub fn objects(&self, case: &Case) -> Result<Vec<Value>, CatalogError> {
        let mut objects = Vec::new();
        let clients = case.needs_client_pods().then_some(CLIENTS_FIXTURE);
        for file in case.fixtures.iter().map(String::as_str).chain(clients) {
            for mut doc in self.project.load_fixture(&case.name, file)? {
                manifest::map_images(&mut doc, &self.images);
                objects.push(doc);
            }
        }
        Ok(objects)
    }

    /// The (mapped) images `cases` run, for preloading into kind.
    pub fn images<'a>(
        &self,
        cases: impl IntoIterator<Item = &'a Case>,
    ) -> Result<Vec<String>, CatalogError> {
        let mut out = Vec::new();
        for case in cases {
            for doc in self.objects(case)? {
                for image in manifest::images(&doc) {
                    if !out.contains(&image) {
                        out.push(image);
                    }
                }
            }
        }
        Ok(out)
    }
}

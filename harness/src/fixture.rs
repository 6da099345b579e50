//! The fixture engine: a case's objects (its fixture files plus the client
//! DaemonSet), images mapped, applied into the case's namespace.

use serde_json::Value;

use crate::catalog::{CatalogError, Project};
use crate::kube::manifest::{self, ImageMap};
use crate::model::{Case, ClientPods, CLIENT_NAME};

/// The harness's client pods: one `svcconf-probe serve` per node, so a
/// check can pick a client on the node it means.
pub const CLIENTS_FIXTURE: &str = "common/clients.yaml";
/// The DaemonSet that fixture declares.
pub const CLIENTS_DAEMONSET: &str = CLIENT_NAME;
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

    /// Every object of `case`, in apply order, images mapped; the client
    /// DaemonSet when the case has its own.
    pub fn objects(&self, case: &Case) -> Result<Vec<Value>, CatalogError> {
        let own = (case.client_pods() == ClientPods::Own).then_some(CLIENTS_FIXTURE);
        let files = case.fixtures.iter().map(String::as_str).chain(own);
        self.load(&case.name, files)
    }

    /// The client DaemonSet, images mapped, for the run's shared client pods.
    pub fn clients(&self) -> Result<Vec<Value>, CatalogError> {
        self.load(CLIENT_NAME, [CLIENTS_FIXTURE])
    }

    fn load<'a>(
        &self,
        case: &str,
        files: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Value>, CatalogError> {
        let mut objects = Vec::new();
        for file in files {
            for mut doc in self.project.load_fixture(case, file)? {
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
        let mut out: Vec<String> = Vec::new();
        let mut docs = Vec::new();
        let mut shared = false;
        for case in cases {
            shared |= case.client_pods() == ClientPods::Shared;
            docs.extend(self.objects(case)?);
        }
        if shared {
            docs.extend(self.clients()?);
        }
        for image in docs.iter().flat_map(manifest::images) {
            if !out.contains(&image) {
                out.push(image);
            }
        }
        Ok(out)
    }
}

//! Images a kind cluster gets on demand: the first case that runs an image
//! the local Docker engine has loads it into the nodes, once per cluster
//! (the WordPress and MySQL images are ~300 MB; only their case pays, and
//! only for the nodes its pods can land on).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

use super::kind::{docker_has_image, Kind};

/// One image's load: done once, awaited by every case that runs the image.
type Load = Arc<OnceCell<Result<(), String>>>;

/// Loads local images into one kind cluster, each at most once.
#[derive(Clone)]
pub struct NodeImages {
    kind: Kind,
    cluster: String,
    docker: PathBuf,
    /// Nodes without a NoSchedule taint; empty means every node.
    workers: Vec<String>,
    loaded: Arc<Mutex<HashMap<String, Load>>>,
}

impl NodeImages {
    /// `already`: images loaded at bring-up; `workers`: where a case's pods
    /// can land (empty: every node).
    pub fn new(
        kind: Kind,
        cluster: String,
        docker: PathBuf,
        workers: Vec<String>,
        already: &[String],
    ) -> Self {
        let loaded = already
            .iter()
            .map(|i| (i.clone(), Arc::new(OnceCell::new_with(Some(Ok(()))))))
            .collect();
        NodeImages {
            kind,
            cluster,
            docker,
            workers,
            loaded: Arc::new(Mutex::new(loaded)),
        }
    }

    /// Loads each of `images` the local engine has and the nodes do not yet
    /// (into every node with `everywhere`, for DaemonSets that tolerate the
    /// control plane's taint); images the engine lacks are left for the nodes
    /// to pull. Concurrent callers of the same image wait for one load.
    pub async fn ensure(&self, images: &[String], everywhere: bool) -> Result<Vec<String>, String> {
        let nodes: &[String] = if everywhere { &[] } else { &self.workers };
        let mut done = Vec::new();
        for image in images {
            let cell = self
                .loaded
                .lock()
                .await
                .entry(image.clone())
                .or_default()
                .clone();
            let mut loaded_now = false;
            cell.get_or_init(|| async {
                if !docker_has_image(&self.docker, image).await {
                    return Ok(());
                }
                loaded_now = true;
                self.kind
                    .load_images_into(&self.cluster, std::slice::from_ref(image), nodes)
                    .await
                    .map_err(|e| format!("loading {image} into {}: {e}", self.cluster))
            })
            .await
            .clone()?;
            if loaded_now {
                done.push(image.clone());
            }
        }
        Ok(done)
    }
}

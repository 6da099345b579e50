//! The offline cluster kit's output (`ci/kit/kit build` writes
//! `$SVCCONF_CACHE/kit.json`): the node image, kind, and the images it built.
//! When present, svcconf uses it with no flag.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kit {
    pub kubernetes_version: String,
    pub node_image: String,
    pub kind: PathBuf,
    #[serde(default)]
    pub kubectl: Option<PathBuf>,
    #[serde(default)]
    pub images: KitImages,
    /// Public image → the kit's stand-in (WordPress, MySQL from Debian).
    #[serde(default)]
    pub image_map: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub manifests: KitManifests,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KitManifests {
    /// MetalLB's metallb-native.yaml, read from its Go module.
    pub metallb: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KitImages {
    pub probe: Option<String>,
    pub metallb_controller: Option<String>,
    pub metallb_speaker: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("cannot read the kit file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kit file {path} is malformed (re-run ci/kit/kit build)")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Kit {
    /// `$SVCCONF_CACHE/kit.json`, with the kit's own defaults for the cache.
    pub fn default_path() -> PathBuf {
        let cache = std::env::var_os("SVCCONF_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                    });
                base.join("svcconf")
            });
        cache.join("kit.json")
    }

    /// The kit, if it was built; an unreadable or malformed file is an error,
    /// not a silent fallback to public images.
    pub fn load() -> Result<Option<Kit>, KitError> {
        let path = Self::default_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|source| KitError::Parse { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KitError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kit_contract() {
        let kit: Kit = serde_json::from_str(
            r#"{"kubernetesVersion":"v1.34.4","nodeImage":"svcconf/kind-node:v1.34.4-abc","kind":"/c/kind","kubectl":"/c/kubectl",
                "images":{"probe":"svcconf/probe:123","metallbController":"quay.io/metallb/controller:v0.15.2","metallbSpeaker":null}}"#,
        )
        .unwrap();
        assert_eq!(kit.images.probe.as_deref(), Some("svcconf/probe:123"));
        assert_eq!(kit.node_image, "svcconf/kind-node:v1.34.4-abc");
        assert!(kit.images.metallb_speaker.is_none());
    }
}

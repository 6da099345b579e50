//! The offline cluster kit's output (`ci/kit/kit build` writes
//! `$SVCCONF_CACHE/kit.json`): the node image of every Kubernetes version it
//! built, kind, and the images it built. When present, svcconf uses it with
//! no flag.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Kit {
    /// The kit's default version: versions.env's when built, else the newest built.
    pub kubernetes_version: String,
    /// The node image of `kubernetes_version`.
    pub node_image: String,
    /// Every version built whose node image the engine still has, by version
    /// (`v1.37.2`); older kits have only the default.
    #[serde(default)]
    pub node_images: BTreeMap<String, String>,
    pub kind: PathBuf,
    /// kubectl of the default version.
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
    /// svcconf's own image, for runs inside the cluster.
    #[serde(default)]
    pub svcconf: Option<String>,
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
    #[error("unknown Kubernetes version syntax '{0}' (expected v1.MINOR.PATCH, e.g. v1.36.3)")]
    VersionSyntax(String),
    #[error("kind node image for {0} is not built; run: SVCCONF_KUBERNETES_VERSION={0} ci/kit/kit build")]
    NotBuilt(String),
}

/// `v1.36.3` (a leading `v` added when missing; `-rc.1`-style suffixes
/// allowed), or `None` when `version` is not a Kubernetes release version.
pub fn normalize_kubernetes_version(version: &str) -> Option<String> {
    let v = version.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let (core, pre) = match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || parts[0] != "1" || !parts.iter().all(numeric) {
        return None;
    }
    if let Some(pre) = pre {
        let (kind, n) = pre.split_once('.')?;
        if !matches!(kind, "alpha" | "beta" | "rc") || !numeric(&n) {
            return None;
        }
    }
    Some(format!("v{v}"))
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

    /// The kind node image for Kubernetes `version` (the kit's default when
    /// `None`); a version the kit has not built is an error naming the
    /// command that builds it.
    pub fn node_image_for(&self, version: Option<&str>) -> Result<String, KitError> {
        let Some(version) = version else {
            return Ok(self.node_image.clone());
        };
        let v = normalize_kubernetes_version(version)
            .ok_or_else(|| KitError::VersionSyntax(version.to_string()))?;
        if let Some(image) = self.node_images.get(&v) {
            return Ok(image.clone());
        }
        if v == self.kubernetes_version {
            return Ok(self.node_image.clone());
        }
        Err(KitError::NotBuilt(v))
    }

    /// Every Kubernetes version the kit has a node image for, oldest first.
    pub fn versions(&self) -> Vec<String> {
        let mut all: Vec<String> = self.node_images.keys().cloned().collect();
        if !all.contains(&self.kubernetes_version) {
            all.push(self.kubernetes_version.clone());
        }
        all.sort_by_key(|v| version_key(v));
        all
    }
}

/// The node image kind clusters are made with (the CLI, the tests and the
/// bench alike): `explicit` wins; else the kit's image of `version` (its
/// default when `None`); with no kit, the image kind publishes for
/// `version` (`kindest/node:<version>`, from a registry), or kind's own
/// default when no version was asked for.
pub fn node_image(
    kit: Option<&Kit>,
    explicit: Option<&str>,
    version: Option<&str>,
) -> Result<Option<String>, KitError> {
    match (explicit, kit, version) {
        (Some(image), _, _) => Ok(Some(image.to_string())),
        (None, Some(kit), version) => kit.node_image_for(version).map(Some),
        (None, None, Some(version)) => {
            let v = normalize_kubernetes_version(version)
                .ok_or_else(|| KitError::VersionSyntax(version.to_string()))?;
            Ok(Some(format!("kindest/node:{v}")))
        }
        (None, None, None) => Ok(None),
    }
}

fn version_key(v: &str) -> Vec<u64> {
    v.trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_image_follows_the_kubernetes_version() {
        let kit: Kit = serde_json::from_str(
            r#"{"kubernetesVersion":"v1.37.2","nodeImage":"n37","kind":"/k",
                "nodeImages":{"v1.34.4":"n34","v1.37.2":"n37"}}"#,
        )
        .unwrap();
        assert_eq!(
            node_image(Some(&kit), None, None).unwrap().as_deref(),
            Some("n37")
        );
        assert_eq!(
            node_image(Some(&kit), None, Some("v1.34.4"))
                .unwrap()
                .as_deref(),
            Some("n34")
        );
        // An explicit image wins over the version.
        assert_eq!(
            node_image(Some(&kit), Some("mine:1"), Some("v1.36.3"))
                .unwrap()
                .as_deref(),
            Some("mine:1")
        );
        assert_eq!(
            node_image(Some(&kit), None, Some("v1.36.3"))
                .unwrap_err()
                .to_string(),
            "kind node image for v1.36.3 is not built; run: SVCCONF_KUBERNETES_VERSION=v1.36.3 ci/kit/kit build"
        );
        assert_eq!(node_image(None, None, None).unwrap(), None);
        // No kit: the image kind publishes for the release (1.36.3 read as v1.36.3).
        assert_eq!(
            node_image(None, None, Some("1.36.3")).unwrap().as_deref(),
            Some("kindest/node:v1.36.3")
        );
        assert!(node_image(None, None, Some("latest")).is_err());
    }

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
        // A kit from before nodeImages: its one version is still found.
        assert!(kit.node_images.is_empty());
        assert_eq!(
            kit.node_image_for(Some("v1.34.4")).unwrap(),
            "svcconf/kind-node:v1.34.4-abc"
        );
        assert_eq!(kit.versions(), ["v1.34.4"]);
    }

    fn two_version_kit() -> Kit {
        serde_json::from_str(
            r#"{"kubernetesVersion":"v1.37.2","nodeImage":"svcconf/kind-node:v1.37.2-k37","kind":"/c/kind",
                "nodeImages":{"v1.34.4":"svcconf/kind-node:v1.34.4-k34","v1.37.2":"svcconf/kind-node:v1.37.2-k37"},
                "kubectls":{"v1.34.4":"/c/k8s-v1.34.4-r1/bin/kubectl"},"kubectl":"/c/k8s-v1.37.2-r1/bin/kubectl"}"#,
        )
        .unwrap()
    }

    #[test]
    fn picks_the_node_image_of_a_built_version() {
        let kit = two_version_kit();
        assert_eq!(
            kit.node_image_for(None).unwrap(),
            "svcconf/kind-node:v1.37.2-k37"
        );
        assert_eq!(
            kit.node_image_for(Some("v1.34.4")).unwrap(),
            "svcconf/kind-node:v1.34.4-k34"
        );
        assert_eq!(
            kit.node_image_for(Some("1.37.2")).unwrap(),
            "svcconf/kind-node:v1.37.2-k37"
        );
        assert_eq!(kit.versions(), ["v1.34.4", "v1.37.2"]);
    }

    #[test]
    fn an_unbuilt_version_names_the_command_that_builds_it() {
        let err = two_version_kit()
            .node_image_for(Some("v1.36.3"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "kind node image for v1.36.3 is not built; run: SVCCONF_KUBERNETES_VERSION=v1.36.3 ci/kit/kit build"
        );
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn a_malformed_version_is_its_own_error() {
        for bad in [
            "v1.36",
            "latest",
            "v2.0.0",
            "v1.36.x",
            "",
            "v1.36.3-foo.1",
            "v1.36.3.1",
        ] {
            let err = two_version_kit().node_image_for(Some(bad)).unwrap_err();
            assert!(matches!(err, KitError::VersionSyntax(_)), "{bad}: {err}");
        }
        assert_eq!(
            normalize_kubernetes_version("v1.37.0-rc.1").as_deref(),
            Some("v1.37.0-rc.1")
        );
    }
}

//! The catalog: case declarations (`cases/<suite>/<case>.yaml`), fixtures
//! (`fixtures/`) and kind configs (`kind-configs/`). The project's own are
//! compiled into the binary (build.rs), so an installed `svcconf` or
//! `kubectl svcconf` needs no checkout; `--cases DIR` lays a user's files
//! over them. Loading checks every case and every fixture it names before
//! anything touches a cluster, so a malformed file is one clear error up front.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::backend;
use crate::kube::manifest::{self, ManifestError};
use crate::model::{Case, CaseError, Catalog, ProxyMode};

/// Every file of the project's own catalog: (`cases/...`, `fixtures/...`,
/// `kind-configs/...`, contents).
const BUILT_IN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--cases {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("{origin}: not a case declaration")]
    Case {
        origin: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error(transparent)]
    Invalid(#[from] CaseError),
    /// A case that parsed but does not hold together, where it says so.
    #[error("{origin}{}: {problem}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
    InvalidCase {
        origin: String,
        line: Option<usize>,
        problem: CaseError,
    },
    #[error(transparent)]
    Fixture(#[from] ManifestError),
    #[error("case {case:?} names fixture {fixture:?}, which is neither built in nor in --cases' fixtures/")]
    MissingFixture { case: String, fixture: String },
    #[error("no kind config for {0} (kind-configs/{0}.yaml)")]
    NoKindConfig(ProxyMode),
}

/// One file of the catalog and where it came from, for error messages.
#[derive(Debug, Clone)]
struct File {
    origin: String,
    text: String,
}

/// The catalog's files: the built-in ones, with a user's laid over them.
#[derive(Debug, Clone)]
pub struct Project {
    /// Keyed `fixtures/<path>` and `kind-configs/<mode>.yaml`.
    files: Arc<BTreeMap<String, File>>,
    /// Built-in cases, then the user's, in that order (a user case replaces
    /// the built-in one of the same name).
    cases: Arc<Vec<File>>,
}

impl Project {
    /// The catalog compiled into this binary.
    pub fn built_in() -> Self {
        let mut files = BTreeMap::new();
        let mut cases = Vec::new();
        for (key, text) in BUILT_IN {
            let file = File {
                origin: format!("built-in {key}"),
                text: (*text).to_string(),
            };
            if key.starts_with("cases/") {
                cases.push(file);
            } else {
                files.insert((*key).to_string(), file);
            }
        }
        Project {
            files: Arc::new(files),
            cases: Arc::new(cases),
        }
    }

    /// Lays the YAML files under `dir` over this catalog: those under
    /// `dir/fixtures/` are fixtures (a path the built-in catalog has too is
    /// replaced), every other one a case declaration (a case of a built-in
    /// name replaces that case).
    pub fn with_cases_dir(mut self, dir: &Path) -> Result<Self, CatalogError> {
        if !dir.is_dir() {
            return Err(CatalogError::NotADirectory(dir.to_path_buf()));
        }
        let mut paths = Vec::new();
        collect_yaml(dir, &mut paths)?;
        paths.sort();
        let fixtures = dir.join("fixtures");
        let files = Arc::make_mut(&mut self.files);
        let cases = Arc::make_mut(&mut self.cases);
        for path in paths {
            let file = File {
                origin: path.display().to_string(),
                text: read(&path)?,
            };
            match path.strip_prefix(&fixtures) {
                Ok(rel) => {
                    files.insert(format!("fixtures/{}", rel.display()), file);
                }
                Err(_) => cases.push(file),
            }
        }
        Ok(self)
    }

    /// A file of the catalog by key (`fixtures/metallb/pin.yaml`).
    pub fn file(&self, key: &str) -> Option<&str> {
        self.files.get(key).map(|f| f.text.as_str())
    }

    /// `kind-configs/<mode>.yaml`: one control plane and two workers.
    pub fn kind_config(&self, mode: ProxyMode) -> Result<&str, CatalogError> {
        self.file(&format!("kind-configs/{mode}.yaml"))
            .ok_or(CatalogError::NoKindConfig(mode))
    }

    /// Loads and checks every case, and every fixture the cases name.
    pub fn load_catalog(&self) -> Result<Catalog, CatalogError> {
        let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
        let mut cases: Vec<(String, Case)> = Vec::new();
        let built_in = self
            .cases
            .iter()
            .filter(|f| f.origin.starts_with("built-in "))
            .count();
        for (i, file) in self.cases.iter().enumerate() {
            let case: Case =
                serde_saphyr::from_str(&file.text).map_err(|source| CatalogError::Case {
                    origin: file.origin.clone(),
                    source: Box::new(source),
                })?;
            case.validate()
                .map_err(|problem| CatalogError::InvalidCase {
                    origin: file.origin.clone(),
                    line: match &problem {
                        CaseError::Invalid {
                            check: Some(check), ..
                        } => line_of_check(&file.text, check),
                        _ => None,
                    },
                    problem,
                })?;
            for fixture in &case.fixtures {
                self.load_fixture(&case.name, fixture)?;
            }
            match by_name.get(&case.name) {
                // A user's case replaces the built-in one of its name.
                Some(&at) if i >= built_in && at < built_in => {
                    cases[at] = (file.origin.clone(), case);
                    // A second user case of that name is a duplicate.
                    by_name.insert(cases[at].1.name.clone(), usize::MAX);
                }
                _ => {
                    by_name.insert(case.name.clone(), cases.len());
                    cases.push((file.origin.clone(), case));
                }
            }
        }
        Ok(Catalog::new(cases)?)
    }

    /// Reads one fixture file (relative to `fixtures/`) into its objects,
    /// each backend declaration expanded into its workload.
    pub fn load_fixture(&self, case: &str, fixture: &str) -> Result<Vec<Value>, CatalogError> {
        let (origin, mut docs) = self.parse_fixture(case, fixture)?;
        for (index, doc) in docs.iter_mut().enumerate() {
            if backend::is_declaration(doc) {
                let base = self.backend_base(case)?;
                *doc = backend::expand(&base, doc).map_err(|problem| ManifestError::Invalid {
                    origin: origin.to_string(),
                    index: index + 1,
                    problem,
                })?;
            }
        }
        Ok(docs)
    }

    /// The backend fixture's one workload, which declarations expand from.
    fn backend_base(&self, case: &str) -> Result<Value, CatalogError> {
        let (origin, docs) = self.parse_fixture(case, backend::FIXTURE)?;
        match <[Value; 1]>::try_from(docs) {
            Ok([base]) if !backend::is_declaration(&base) => Ok(base),
            _ => Err(ManifestError::Invalid {
                origin: origin.to_string(),
                index: 1,
                problem: "the backend fixture must be exactly one workload".into(),
            }
            .into()),
        }
    }

    fn parse_fixture(&self, case: &str, fixture: &str) -> Result<(&str, Vec<Value>), CatalogError> {
        let file = self
            .files
            .get(&format!("fixtures/{fixture}"))
            .ok_or_else(|| CatalogError::MissingFixture {
                case: case.to_string(),
                fixture: fixture.to_string(),
            })?;
        let origin = file
            .origin
            .strip_prefix("built-in ")
            .unwrap_or(&file.origin);
        Ok((origin, manifest::parse_documents(origin, &file.text)?))
    }
}

fn read(path: &Path) -> Result<String, CatalogError> {
    std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CatalogError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CatalogError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let path = entry
            .map_err(|source| CatalogError::Read {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// The line (from 1) declaring the check named `check` in a case file: an
/// indented or listed `name: <check>`, the case's own top-level name aside.
fn line_of_check(text: &str, check: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let indented = line.starts_with([' ', '-']);
            let entry = line.trim_start().trim_start_matches("- ").trim_start();
            indented
                && entry
                    .strip_prefix("name:")
                    .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == check)
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalog_has_cases_fixtures_and_kind_configs() {
        let project = Project::built_in();
        let catalog = project.load_catalog().unwrap();
        assert!(catalog.get("clusterip-basic").is_some());
        assert!(project.file("fixtures/metallb/pin.yaml").is_some());
        for mode in ProxyMode::ALL {
            assert!(project.kind_config(mode).unwrap().contains("kind: Cluster"));
        }
    }

    #[test]
    fn cases_share_the_run_client_pods_unless_they_name_them() {
        use crate::model::ClientPods;
        let catalog = Project::built_in().load_catalog().unwrap();
        let pods = |name: &str| catalog.get(name).unwrap().client_pods();
        // Their sabotage re-points a Service at the client pods, or a step waits on them.
        for own in ["clusterip-source-ip", "headless", "mode-switch"] {
            assert_eq!(pods(own), ClientPods::Own, "{own}");
        }
        // They expect refusals: ICMP the kernel rate-limits per client.
        for own in ["no-endpoints", "same-name-match"] {
            assert_eq!(pods(own), ClientPods::Own, "{own}");
        }
        for shared in [
            "clusterip-basic",
            "dns",
            "affinity-timeout",
            "endpoints-readiness",
        ] {
            assert_eq!(pods(shared), ClientPods::Shared, "{shared}");
        }
        assert_eq!(pods("lb-assigned"), ClientPods::None);
    }

    #[test]
    fn a_cases_dir_adds_and_replaces_cases_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let basic = Project::built_in()
            .load_catalog()
            .unwrap()
            .get("clusterip-basic")
            .cloned()
            .unwrap();
        let mut mine = serde_json::to_value(&basic).unwrap();
        mine["description"] = "my own clusterip-basic".into();
        mine["fixtures"] = serde_json::json!(["mine/web.yaml"]);
        std::fs::create_dir_all(dir.path().join("fixtures/mine")).unwrap();
        std::fs::write(
            dir.path().join("fixtures/mine/web.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80}]}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("basic.yaml"),
            serde_json::to_string(&mine).unwrap(),
        )
        .unwrap();
        let mut extra = mine.clone();
        extra["name"] = "my-extra".into();
        std::fs::write(
            dir.path().join("extra.yaml"),
            serde_json::to_string(&extra).unwrap(),
        )
        .unwrap();
        let built_in = Project::built_in().load_catalog().unwrap().cases().len();
        let catalog = Project::built_in()
            .with_cases_dir(dir.path())
            .unwrap()
            .load_catalog()
            .unwrap();
        assert_eq!(catalog.cases().len(), built_in + 1);
        assert_eq!(
            catalog.get("clusterip-basic").unwrap().description,
            "my own clusterip-basic"
        );
        assert!(catalog.get("my-extra").is_some());
    }

    #[test]
    fn a_malformed_user_case_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, "name: x\nsuite: [not, a, string]\n").unwrap();
        let err = Project::built_in()
            .with_cases_dir(dir.path())
            .unwrap()
            .load_catalog()
            .unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let missing = Project::built_in().with_cases_dir(&dir.path().join("nope"));
        assert!(matches!(missing, Err(CatalogError::NotADirectory(_))));
    }

    /// A case whose checks cannot work is refused when the catalog loads,
    /// naming the file and the check's line: no cluster run finds it.
    #[test]
    fn a_misfit_check_is_refused_at_load_with_file_and_line() {
        let dns = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/cases/dns/dns.yaml"),
        )
        .unwrap();
        let misfits = [
            (
                "from: anyNode\n    probe: {dns: {name: web, type: A}}",
                "from: external\n    probe: {dns: {name: web, type: A}}",
                "a dns probe cannot run from `external`",
            ),
            (
                "probe: {dns: {name: web, type: A}}\n    expect: [{rcode: NOERROR}, {answers: [\"${clusterIP:web}\"]}]",
                "probe: {tcp: {target: \"web:80\"}}\n    expect: [{backends: {pods: app=web, count: 1}}]",
                "assertion `backends` judges http reports; its tcp probe gives tcp reports",
            ),
            (
                "from: anyNode\n    probe: {dns: {name: web, type: A}}",
                "from: anyNode\n    probe: {apiWarnings: {apiVersion: v1, kind: Service, name: web}}",
                "a apiWarnings probe cannot run from `anyNode`: the API server's warnings are asked for by the harness",
            ),
            (
                "from: anyNode\n    probe: {dns: {name: web, type: A}}\n    expect: [{rcode: NOERROR}, {answers: [\"${clusterIP:web}\"]}]",
                "from: apiServer\n    probe: {apiWarnings: {apiVersion: v1, kind: Service, name: web}}\n    expect: [{rcode: NOERROR}]",
                "assertion `rcode` judges dns reports; its apiWarnings probe gives warnings reports",
            ),
        ];
        for (from, to, problem) in misfits {
            assert!(dns.contains(from), "the dns case changed: {from}");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("dns.yaml");
            std::fs::write(&path, dns.replacen(from, to, 1)).unwrap();
            let err = Project::built_in()
                .with_cases_dir(dir.path())
                .unwrap()
                .load_catalog()
                .unwrap_err()
                .to_string();
            // `short-name` is declared on line 9 of the file.
            let at = format!(
                "{}:9: case \"dns\": check \"short-name\": {problem}",
                path.display()
            );
            assert!(err.contains(&at), "{err}\nwanted: {at}");
        }
    }

    #[test]
    fn a_check_is_found_by_its_name_not_the_cases() {
        let text = "name: web\nchecks:\n  - name: other\n  - from: anyNode\n    name: web\n";
        assert_eq!(line_of_check(text, "other"), Some(3));
        assert_eq!(line_of_check(text, "web"), Some(5));
        assert_eq!(line_of_check(text, "none"), None);
    }
}

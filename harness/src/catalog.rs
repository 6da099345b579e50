//! The project on disk: case declarations under `suites/cases/`, fixtures
//! under `fixtures/`, kind configs under `kind-configs/`. Loading checks every
//! case and every fixture it names before anything touches a cluster, so a
//! malformed file is one clear error up front.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::kube::manifest::{self, ManifestError};
use crate::model::{Case, CaseError, Catalog, ProxyMode};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot find the svcconf project (a directory with fixtures/ and suites/cases/); looked in {0}")]
    NotFound(String),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a case declaration")]
    Case {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error(transparent)]
    Invalid(#[from] CaseError),
    #[error(transparent)]
    Fixture(#[from] ManifestError),
    #[error("case {case:?} names fixture {fixture:?}, which is not in {dir}")]
    MissingFixture {
        case: String,
        fixture: String,
        dir: PathBuf,
    },
}

/// Where the project's files are.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
}

impl Project {
    /// Uses `root` when given; else the nearest directory at or above the
    /// current one that holds `fixtures/` and `suites/cases/`; else the
    /// source tree this binary was built from.
    pub fn discover(root: Option<&Path>) -> Result<Self, CatalogError> {
        let is_project = |p: &Path| p.join("fixtures").is_dir() && p.join("suites/cases").is_dir();
        if let Some(root) = root {
            return if is_project(root) {
                Ok(Project {
                    root: root.to_path_buf(),
                })
            } else {
                Err(CatalogError::NotFound(root.display().to_string()))
            };
        }
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        if let Some(found) = cwd.ancestors().find(|p| is_project(p)) {
            return Ok(Project {
                root: found.to_path_buf(),
            });
        }
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        if is_project(&built) {
            return Ok(Project { root: built });
        }
        Err(CatalogError::NotFound(format!(
            "{} and its parents, and {}",
            cwd.display(),
            built.display()
        )))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn fixtures_dir(&self) -> PathBuf {
        self.root.join("fixtures")
    }

    pub fn cases_dir(&self) -> PathBuf {
        self.root.join("suites/cases")
    }

    pub fn kind_config(&self, mode: ProxyMode) -> PathBuf {
        self.root.join("kind-configs").join(format!("{mode}.yaml"))
    }

    /// Loads and checks every case, and every fixture the cases name.
    pub fn load_catalog(&self) -> Result<Catalog, CatalogError> {
        let mut files = Vec::new();
        collect_yaml(&self.cases_dir(), &mut files)?;
        files.sort();
        let mut cases = Vec::new();
        for path in files {
            let text = read(&path)?;
            let case: Case =
                serde_saphyr::from_str(&text).map_err(|source| CatalogError::Case {
                    path: path.clone(),
                    source: Box::new(source),
                })?;
            for fixture in &case.fixtures {
                self.load_fixture(&case.name, fixture)?;
            }
            cases.push((path.display().to_string(), case));
        }
        Ok(Catalog::new(cases)?)
    }

    /// Reads one fixture file (relative to `fixtures/`) into its objects.
    pub fn load_fixture(&self, case: &str, fixture: &str) -> Result<Vec<Value>, CatalogError> {
        let dir = self.fixtures_dir();
        let path = dir.join(fixture);
        // A fixture path must stay inside fixtures/.
        if fixture.contains("..") || !path.is_file() {
            return Err(CatalogError::MissingFixture {
                case: case.to_string(),
                fixture: fixture.to_string(),
                dir,
            });
        }
        Ok(manifest::parse_documents(
            &format!("fixtures/{fixture}"),
            &read(&path)?,
        )?)
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

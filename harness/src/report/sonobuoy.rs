//! svcconf as a sonobuoy plugin: the reports go to sonobuoy's results
//! directory (`$SONOBUOY_RESULTS_DIR`, default `/tmp/sonobuoy/results`), and
//! when they are written, the `done` file there names the JUnit file, which
//! is what sonobuoy's worker waits for before it uploads the results. It is
//! written for every run, bad input included: without it sonobuoy waits
//! until its own timeout (hours).

use std::path::{Path, PathBuf};

use super::{write_file, ReportError};

/// The results directory sonobuoy mounts into every plugin container.
pub const DEFAULT_RESULTS_DIR: &str = "/tmp/sonobuoy/results";
/// The environment variable sonobuoy sets to it.
pub const RESULTS_DIR_ENV: &str = "SONOBUOY_RESULTS_DIR";

/// Where a plugin run writes, and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SonobuoyResults {
    /// Where the reports and the done file go.
    pub dir: PathBuf,
    /// The results directory named does not exist: one line, for the pod
    /// log and the JUnit's setup error. The run then checks nothing.
    pub problem: Option<String>,
}

impl SonobuoyResults {
    /// From the environment sonobuoy gives its plugins.
    pub fn from_env() -> Self {
        Self::locate(
            std::env::var(RESULTS_DIR_ENV).ok().as_deref(),
            Path::new(DEFAULT_RESULTS_DIR),
        )
    }

    /// `named` (the variable's value) when it is a directory. When it is
    /// not, the problem is said and the reports go to `default` if that is
    /// a directory (the worker's volume, so sonobuoy still hears of it),
    /// else to `named`, created.
    pub fn locate(named: Option<&str>, default: &Path) -> Self {
        let named = named.filter(|d| !d.trim().is_empty());
        let wanted = named.map_or_else(|| default.to_path_buf(), PathBuf::from);
        if wanted.is_dir() {
            return SonobuoyResults {
                dir: wanted,
                problem: None,
            };
        }
        let source = match named {
            Some(_) => format!("{RESULTS_DIR_ENV}={}", wanted.display()),
            None => format!("{RESULTS_DIR_ENV} unset, sonobuoy's default"),
        };
        let mut problem = format!(
            "sonobuoy's results directory {} does not exist ({source}): the plugin's pod must mount sonobuoy's results volume there",
            wanted.display()
        );
        let dir = if wanted != default && default.is_dir() {
            problem.push_str(&format!(
                "; the error report goes to {} instead",
                default.display()
            ));
            default.to_path_buf()
        } else {
            wanted
        };
        SonobuoyResults {
            dir,
            problem: Some(problem),
        }
    }

    pub fn done_file(&self) -> PathBuf {
        self.dir.join("done")
    }

    /// Writes the done file naming `results` (its content is that path).
    pub fn write_done(&self, results: &Path) -> Result<(), ReportError> {
        write_file(&self.done_file(), results.display().to_string().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_directory_when_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("r");
        std::fs::create_dir(&dir).unwrap();
        let r = SonobuoyResults::locate(Some(dir.to_str().unwrap()), Path::new("/nonexistent"));
        assert_eq!(r.dir, dir);
        assert_eq!(r.problem, None);
        r.write_done(&dir.join("junit.xml")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("done")).unwrap(),
            dir.join("junit.xml").display().to_string()
        );
    }

    #[test]
    fn a_missing_directory_is_said_and_the_default_used() {
        let tmp = tempfile::tempdir().unwrap();
        let r = SonobuoyResults::locate(Some("/nowhere/results"), tmp.path());
        assert_eq!(r.dir, tmp.path());
        let problem = r.problem.unwrap();
        assert!(
            problem.starts_with("sonobuoy's results directory /nowhere/results does not exist (SONOBUOY_RESULTS_DIR=/nowhere/results)"),
            "{problem}"
        );
        assert!(problem.ends_with(&format!(
            "the error report goes to {} instead",
            tmp.path().display()
        )));
        // Nothing to fall back to: the named one, which the writer creates.
        let gone = tmp.path().join("gone");
        let r = SonobuoyResults::locate(None, &gone);
        assert_eq!(r.dir, gone);
        assert!(r.problem.unwrap().contains("SONOBUOY_RESULTS_DIR unset"));
    }
}

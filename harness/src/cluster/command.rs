//! Running the external tools svcconf drives (kind, docker) with a deadline,
//! and turning their failures into one readable error.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {}s", .after.as_secs())]
    Timeout { command: String, after: Duration },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

/// Runs `program args...`, returning stdout; the child is killed if the
/// deadline passes or the caller is dropped (Ctrl-C).
pub async fn run(
    program: &Path,
    args: &[&str],
    deadline: Duration,
) -> Result<String, CommandError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    tracing::debug!(%command, "running");
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let output = match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(output) => output.map_err(|source| CommandError::Spawn {
            program: program.display().to_string(),
            source,
        })?,
        Err(_) => {
            return Err(CommandError::Timeout {
                command,
                after: deadline,
            })
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Tools say what went wrong in their ERROR/error lines (kind prints a
        // Go stack after them); without such lines, the end of stderr.
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let flagged: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("error") || l.contains("failed"))
            .take(4)
            .collect();
        let tail = if flagged.is_empty() {
            lines[lines.len().saturating_sub(6)..].join(" | ")
        } else {
            flagged.join(" | ")
        };
        return Err(CommandError::Failed {
            command,
            status: output.status.to_string(),
            stderr: tail,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Finds `name` on PATH, as a shell would.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

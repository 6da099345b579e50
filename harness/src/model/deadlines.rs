//! How long things may take before they count as broken: one set for a run,
//! read by the clusters (bring-up, teardown) and by each case (readiness, propagation).
//!
//! A host that is slow as a whole (a VM under emulation, where every process
//! start costs ten times more) sets one factor, `SVCCONF_DEADLINE_SCALE`, that
//! multiplies every deadline and each request's timeout. It changes how long
//! svcconf waits, never what a check expects.

use std::sync::OnceLock;
use std::time::Duration;

use super::REQUEST_TIMEOUT_MS;

/// The variable that sets the factor when the CLI's `--deadline-scale` does not.
pub const SCALE_ENV: &str = "SVCCONF_DEADLINE_SCALE";

/// The largest factor taken: beyond it a run would wait hours on one case.
const MAX_SCALE: f64 = 20.0;

static SCALE: OnceLock<f64> = OnceLock::new();

/// A factor as given on the command line or in [`SCALE_ENV`]: a number from 1 to 20.
pub fn parse_scale(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(k) if (1.0..=MAX_SCALE).contains(&k) => Ok(k),
        _ => Err(format!(
            "a deadline scale is a number from 1 to {MAX_SCALE} (how many times slower than usual this host is); got {s:?}"
        )),
    }
}

/// Sets the run's factor once, before anything waits; a second call keeps the first.
pub fn set_scale(k: f64) {
    let _ = SCALE.set(k);
}

/// The run's factor: what [`set_scale`] set, else [`SCALE_ENV`] if it parses, else 1.
pub fn scale() -> f64 {
    *SCALE.get_or_init(|| {
        std::env::var(SCALE_ENV)
            .ok()
            .and_then(|s| parse_scale(&s).ok())
            .unwrap_or(1.0)
    })
}

/// `d` stretched by the run's factor.
pub fn scaled(d: Duration) -> Duration {
    d.mul_f64(scale())
}

/// Each request's timeout, in ms (the probe's `--timeout-ms`).
pub fn request_timeout_ms() -> u32 {
    (f64::from(REQUEST_TIMEOUT_MS) * scale()).round() as u32
}

/// How long things may take before they count as broken.
#[derive(Debug, Clone)]
pub struct Deadlines {
    /// Each declared readiness of a case (upstream e2e uses 2 minutes).
    pub ready: Duration,
    /// A fresh cluster: nodes Ready, kube-proxy and CoreDNS up.
    pub cluster: Duration,
    /// Namespaces gone at teardown.
    pub teardown: Duration,
    /// kube-proxy catching up with an EndpointSlice change (upstream e2e
    /// allows 30 s): how long checks are repeated before their verdict holds.
    pub propagation: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            ready: scaled(Duration::from_secs(120)),
            cluster: scaled(Duration::from_secs(300)),
            teardown: scaled(Duration::from_secs(90)),
            propagation: scaled(Duration::from_secs(30)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_is_a_factor_from_one_to_twenty() {
        assert_eq!(parse_scale("4"), Ok(4.0));
        assert_eq!(parse_scale(" 1.5 "), Ok(1.5));
        for bad in ["0.5", "0", "-2", "21", "fast", "", "NaN", "inf"] {
            let err = parse_scale(bad).unwrap_err();
            assert!(err.contains("from 1 to 20"), "{bad}: {err}");
        }
    }
}

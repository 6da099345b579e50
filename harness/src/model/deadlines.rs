//! How long things may take before they count as broken: one set for a run,
//! read by the clusters (bring-up, teardown) and by each case (readiness, propagation).

use std::time::Duration;

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
            ready: Duration::from_secs(120),
            cluster: Duration::from_secs(300),
            teardown: Duration::from_secs(90),
            propagation: Duration::from_secs(30),
        }
    }
}

//! The Kubernetes layer: server-side apply, namespaces, named waits with
//! caller-applied deadlines, exec, and the per-case jig.

pub mod apply;
pub mod exec;
pub mod jig;
pub mod manifest;
pub mod namespace;
pub mod nodes;
pub mod wait;

//! The Kubernetes layer: server-side apply, namespaces, named waits with
//! caller-applied deadlines, exec, the per-case jig, and refused requests
//! named as the permission they lacked (`rbac`).

pub mod apply;
pub mod exec;
pub mod jig;
pub mod manifest;
pub mod namespace;
pub mod nodes;
pub mod rbac;
pub mod service_cidr;
pub mod wait;

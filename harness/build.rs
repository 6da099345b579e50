//! Compiles the catalog into the library: every case declaration
//! (`suites/cases/`), fixture (`fixtures/`) and kind config
//! (`kind-configs/`), so an installed `svcconf` needs no checkout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Each embedded tree: where it is in the workspace, and the prefix its
/// files get in the catalog (`cases/routing/clusterip-basic.yaml`).
const TREES: [(&str, &str); 3] = [
    ("../suites/cases", "cases"),
    ("../fixtures", "fixtures"),
    ("../kind-configs", "kind-configs"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let mut files = Vec::new();
    for (dir, prefix) in TREES {
        let root = manifest.join(dir);
        println!("cargo:rerun-if-changed={}", root.display());
        collect(&root, &root, prefix, &mut files);
    }
    files.sort();
    let mut out = String::from("&[\n");
    for (key, path) in &files {
        writeln!(out, "    ({key:?}, include_str!({:?})),", path.display()).unwrap();
    }
    out.push_str("]\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it")).join("catalog.rs");
    std::fs::write(dest, out).expect("write the embedded catalog");
}

fn collect(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(root, &path, prefix, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            let rel = path.strip_prefix(root).expect("under its root");
            let key = format!("{prefix}/{}", rel.display());
            out.push((key, path.canonicalize().expect("a real file")));
        }
    }
}

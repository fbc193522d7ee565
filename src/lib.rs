//! mediagate: the application server between apps, an object store and a media-processing
//! service. Apps get upload credentials scoped to their own prefix; uploads trigger media
//! workflows.

/// The application state, how it is built and served.
pub mod app;
/// Who is calling: app-user JWTs and API keys.
pub mod auth;
/// The command line.
pub mod cli;
/// Where the app reads the time: the system clock, or one tests move.
pub mod clock;
/// Typed, layered configuration and its validation.
pub mod config;
/// What a caller may upload: keys, session policies, and the credential cache.
pub mod credentials;
/// The HTTP edge: routes, extractors, errors.
pub mod http;
pub mod json;
/// Media attributes and their limits.
pub mod media;
/// Upload notifications and the callback parameters clients attach.
pub mod notifications;
/// The durable trigger queue, its worker and the sinks (MPS, webhooks).
pub mod processing;
/// Serving the app on a listener until a shutdown signal.
pub mod server;
/// Signature maths (pure).
pub mod signing;
/// The input bucket: provider, endpoint and addressing, bucket-name rules.
pub mod storage;
/// Database access and migrations.
pub mod store;
/// Security Token Service clients.
pub mod sts;
/// Logging setup.
pub mod telemetry;
/// The upload: what may be asked for, its modes and states.
pub mod uploads;
/// Shared habits of talking to outside HTTP services.
pub mod upstream;
/// Media workflows and the media-file rule.
pub mod workflows;

/// The module map's one rule: dependencies point one way. Read from the sources, so a
/// forbidden `crate::` path fails the build's tests the day it is written.
#[cfg(test)]
mod architecture {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The edge and the wiring: only they may know the configuration and the HTTP layer.
    const OUTER: &[&str] = &["app", "cli", "config", "http", "server"];
    /// What the store may use besides crates: the types it persists.
    const STORE_MAY_USE: &[&str] = &["media", "uploads", "workflows"];

    /// Every top-level module and the top-level modules its code names as `crate::x`
    /// (comments aside).
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph = BTreeMap::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "lib" || name == "main" {
                continue;
            }
            let mut uses = BTreeSet::new();
            for file in rust_files(&path) {
                let text = std::fs::read_to_string(&file).unwrap();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (at, _) in line.match_indices("crate::") {
                        let module: String = line[at + "crate::".len()..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !module.is_empty() && module != name {
                            uses.insert(module);
                        }
                    }
                }
            }
            // `app.rs` and its submodules in `app/` are one module.
            graph.entry(name).or_insert_with(BTreeSet::new).extend(uses);
        }
        graph
    }

    fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
        if path.is_dir() {
            std::fs::read_dir(path)
                .unwrap()
                .flat_map(|e| rust_files(&e.unwrap().path()))
                .collect()
        } else if path.extension().is_some_and(|e| e == "rs") {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        }
    }

    #[test]
    fn domains_never_import_the_edge_and_the_store_no_service() {
        let graph = graph();
        assert!(graph.contains_key("workflows") && graph.contains_key("http"));
        let mut forbidden = Vec::new();
        for (module, uses) in &graph {
            for used in uses {
                let refused = if OUTER.contains(&module.as_str()) {
                    false
                } else if module == "store" {
                    !STORE_MAY_USE.contains(&used.as_str())
                } else {
                    OUTER.contains(&used.as_str())
                };
                if refused {
                    forbidden.push(format!("{module} -> {used}"));
                }
            }
        }
        assert!(
            forbidden.is_empty(),
            "forbidden dependencies: {forbidden:?}"
        );
    }

    #[test]
    fn no_cycle_among_top_level_modules() {
        let graph = graph();
        // Depth-first search for a back edge, reporting the cycle it closes.
        fn visit<'a>(
            node: &'a str,
            graph: &'a BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| *n == node) {
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            if !done.insert(node) {
                return None;
            }
            path.push(node);
            for next in graph.get(node).into_iter().flatten() {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            let cycle = visit(node, &graph, &mut Vec::new(), &mut done);
            assert!(
                cycle.is_none(),
                "import cycle: {}",
                cycle.unwrap().join(" -> ")
            );
        }
    }
}

/// Every request allocates dozens of small, short-lived buffers on one thread and often frees
/// them on another; mimalloc's per-thread pages serve that pattern with far less work than the
/// system allocator's shared arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

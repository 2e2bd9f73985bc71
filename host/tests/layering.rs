//! The host's modules depend on each other one way, and stay small enough to read: read from
//! the source, so a change that adds an import cycle or grows a file past the limit fails here.
//!
//! A module is a file or folder directly under `src/` (`host/` is one module: the runtime).
//! Test modules at the end of a file (`#[cfg(test)]`) are left out of both checks: a test may
//! reach anything, and tests beside their code are welcome.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Past this many lines (before its tests), a file must say at its top why it is longer.
const MAX_LINES: usize = 420;
const REASON: &str = "//! Longer than 400 lines:";

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code before its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable");
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]") && !l.starts_with("#[cfg(all(test"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn module_of(src: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(src).expect("under src");
    let first = relative
        .components()
        .next()
        .expect("a component")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every `crate::<module>` a piece of code names.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        for used in uses(&code(file)) {
            if used != module && modules.contains(&used) {
                edges.insert(used);
            }
        }
    }
    graph
}

/// A cycle through `at`, if there is one, as the path that closes it.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|m| m == at) {
        let mut cycle = path[start..].to_vec();
        cycle.push(at.to_owned());
        return Some(cycle);
    }
    path.push(at.to_owned());
    for next in graph.get(at).into_iter().flatten() {
        if let Some(cycle) = cycle_from(graph, next, path) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

#[test]
fn the_host_modules_have_no_import_cycle() {
    let graph = graph();
    assert!(
        graph.contains_key("host") && graph.contains_key("membrane"),
        "{graph:?}"
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    // Below the runtime, nothing names it; only the test harness, which uses it as an
    // embedder does, sits above it.
    for (module, edges) in &graph {
        assert!(
            module == "host" || module == "testing" || !edges.contains("host"),
            "{module} names the runtime"
        );
    }
    assert!(
        !graph["host"].contains("testing"),
        "the runtime must not depend on its test harness"
    );
}

#[test]
fn no_host_source_file_is_long_without_a_reason() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let code = code(file);
            let lines = code.lines().count();
            (lines > MAX_LINES && !code.contains(REASON))
                .then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these, or say at the top why not ({REASON} ...): {long:?}"
    );
}

/// `unsafe` is denied at both crates' roots and allowed only for the rooms named here, so a new
/// room is a change to this list (and to ARCHITECTURE.md), not an attribute slipped in.
#[test]
fn unsafe_is_allowed_only_in_the_named_rooms() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rooms: BTreeSet<(String, String)> = [
        ("host/src/lib.rs", "mod loader;"),
        ("host/src/isolation/mod.rs", "mod shm;"),
        ("plugin-abi/src/lib.rs", "mod export;"),
    ]
    .into_iter()
    .map(|(file, module)| (file.to_owned(), module.to_owned()))
    .collect();
    let mut found = BTreeSet::new();
    for krate in ["host/src", "plugin-abi/src"] {
        let lib = std::fs::read_to_string(root.join(krate).join("lib.rs")).expect("lib.rs");
        assert!(
            lib.contains("#![deny(unsafe_code)]"),
            "{krate}/lib.rs denies unsafe code"
        );
        let mut files = Vec::new();
        sources(&root.join(krate), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            let mut lines = text.lines();
            while let Some(line) = lines.next() {
                if line.contains("allow(unsafe_code)") {
                    let relative = file.strip_prefix(&root).expect("under the workspace");
                    let next = lines.next().unwrap_or_default().trim().to_owned();
                    found.insert((relative.display().to_string(), next));
                }
            }
        }
    }
    assert_eq!(found, rooms, "the rooms where unsafe code is allowed");
}

//! The host's folders are its layers, and they depend on each other only as [`LAYERS`] allows:
//! read from the source, so a change that adds an edge the table does not list fails here, and
//! the table (which ARCHITECTURE.md draws) is changed on purpose or not at all.
//!
//! A layer is a folder or file directly under `src/`. Test modules at the end of a file
//! (`#[cfg(test)]`) are left out: a test may reach anything, and tests beside their code are
//! welcome.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Past this many lines (before its tests), a file must say at its top why it is longer.
const MAX_LINES: usize = 420;
const REASON: &str = "//! Longer than 400 lines:";

/// Every layer of the host, bottom first, with the layers it may name. A layer may name only
/// layers listed before it, so the table cannot hold a cycle.
const LAYERS: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("failpoint", &[]),
    ("sync", &[]),
    ("frame", &[]),
    ("library", &["error"]),
    ("policy", &["error", "library"]),
    ("loader", &["error", "library"]),
    ("services", &["error", "frame", "policy"]),
    (
        "membrane",
        &["error", "failpoint", "sync", "frame", "policy", "services"],
    ),
    (
        "isolation",
        &["error", "sync", "library", "policy", "loader", "membrane"],
    ),
    (
        "pipeline",
        &[
            "error",
            "library",
            "policy",
            "loader",
            "services",
            "isolation",
        ],
    ),
    (
        "runtime",
        &[
            "error",
            "failpoint",
            "sync",
            "frame",
            "library",
            "policy",
            "loader",
            "services",
            "membrane",
            "isolation",
            "pipeline",
        ],
    ),
    (
        "api",
        &[
            "error",
            "sync",
            "frame",
            "library",
            "policy",
            "services",
            "membrane",
            "isolation",
            "pipeline",
            "runtime",
        ],
    ),
    (
        "testing",
        &[
            "error", "library", "policy", "services", "pipeline", "runtime", "api",
        ],
    ),
];

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

fn layer_of(src: &Path, path: &Path) -> String {
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

/// Every `crate::<layer>` a piece of code names.
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

/// Which layers each layer names, read from the source.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let layers: BTreeSet<String> = files.iter().map(|f| layer_of(&src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "lib" {
            continue;
        }
        let edges = graph.entry(layer.clone()).or_default();
        for used in uses(&code(file)) {
            if used != layer && layers.contains(&used) {
                edges.insert(used);
            }
        }
    }
    graph
}

#[test]
fn the_table_lists_each_layer_once_and_only_layers_below_it() {
    let mut below = BTreeSet::new();
    for (layer, allowed) in LAYERS {
        for dependency in *allowed {
            assert!(
                below.contains(dependency),
                "{layer} may name {dependency}, which is not below it"
            );
        }
        assert!(below.insert(*layer), "{layer} is listed twice");
    }
}

#[test]
fn every_layer_names_only_what_the_table_allows() {
    let graph = graph();
    let table: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut unlisted: Vec<&String> = graph
        .keys()
        .filter(|l| !table.contains_key(l.as_str()))
        .collect();
    unlisted.sort();
    assert!(
        unlisted.is_empty(),
        "layers missing from the table: {unlisted:?}"
    );
    let mut new_edges = Vec::new();
    for (layer, used) in &graph {
        for dependency in used {
            if !table[layer.as_str()].contains(&dependency.as_str()) {
                new_edges.push(format!("{layer} -> {dependency}"));
            }
        }
    }
    assert!(
        new_edges.is_empty(),
        "edges the layer table does not allow (move the code, or change the table and \
         ARCHITECTURE.md on purpose): {new_edges:?}"
    );
}

#[test]
fn every_allowed_edge_is_used() {
    // A table that allows more than the code does no longer describes it.
    let graph = graph();
    let mut unused = Vec::new();
    for (layer, allowed) in LAYERS {
        for dependency in *allowed {
            if !graph
                .get(*layer)
                .is_some_and(|used| used.contains(*dependency))
            {
                unused.push(format!("{layer} -> {dependency}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "edges the table allows but nothing uses: {unused:?}"
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
        ("host/src/lib.rs", "mod sync;"),
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

//! The host's folders are its layers, and they depend on each other only as [`LAYERS`] allows:
//! read from the source, so a change that adds an edge the table does not list fails here, and
//! the table (which ARCHITECTURE.md draws) is changed on purpose or not at all.
//!
//! A layer is a folder or file directly under `src/`. Test modules at the end of a file
//! (`#[cfg(test)]`) are left out: a test may reach anything, and tests beside their code are
//! welcome. Here too: `unsafe` only in the rooms named, and no function longer than a screen
//! or two.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
    ("observe", &["sync"]),
    ("services", &["error", "frame", "policy", "observe"]),
    (
        "membrane",
        &["error", "failpoint", "sync", "frame", "policy", "services"],
    ),
    (
        "isolation",
        &[
            "error", "sync", "frame", "library", "policy", "loader", "membrane",
        ],
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
            "observe",
            "services",
            "membrane",
            "isolation",
            "pipeline",
        ],
    ),
    (
        "fleet",
        &[
            "error", "library", "policy", "services", "pipeline", "runtime",
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
            "observe",
            "services",
            "membrane",
            "isolation",
            "pipeline",
            "runtime",
            "fleet",
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
fn unsafe_is_allowed_only_in_the_named_rooms() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rooms: BTreeSet<(String, String)> = [
        ("host/src/lib.rs", "mod loader;"),
        ("host/src/lib.rs", "mod sync;"),
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

/// Past this many lines, a function is split along its steps.
const MAX_FUNCTION_LINES: usize = 100;

/// The code with its comments, strings and character literals blanked out (newlines kept), so
/// the braces left are the code's own.
fn blank_literals(code: &str) -> Vec<char> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        match literal_end(&chars, i) {
            Some(end) => {
                for c in &mut out[i..end] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
            }
            None => i += 1,
        }
    }
    out
}

/// Where the comment or literal that starts at `at` ends, if one starts there.
fn literal_end(chars: &[char], at: usize) -> Option<usize> {
    let next = chars.get(at + 1).copied();
    let raw = chars[at] == 'r'
        && matches!(next, Some('"' | '#'))
        && (at == 0 || !is_ident(chars[at - 1]) || chars[at - 1] == 'b');
    let end = match chars[at] {
        '/' if next == Some('/') => chars[at..]
            .iter()
            .position(|c| *c == '\n')
            .map_or(chars.len(), |n| at + n),
        '/' if next == Some('*') => block_comment_end(chars, at),
        'r' if raw => raw_string_end(chars, at)?,
        '"' => quoted_end(chars, at, '"'),
        // A character literal, not a lifetime: `'x'`, or an escape such as `'\n'`.
        '\'' if next == Some('\\') => quoted_end(chars, at, '\''),
        '\'' if chars.get(at + 2) == Some(&'\'') => at + 3,
        _ => return None,
    };
    Some(end.min(chars.len()))
}

/// The end of the (possibly nested) block comment that starts at `at`.
fn block_comment_end(chars: &[char], at: usize) -> usize {
    let (mut i, mut depth) = (at, 0);
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
            ('*', Some('/')) => {
                (depth, i) = (depth - 1, i + 2);
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// The end of the raw string (`r"…"`, `r#"…"#`) that starts at `at`; `None` for a raw
/// identifier (`r#type`).
fn raw_string_end(chars: &[char], at: usize) -> Option<usize> {
    let hashes = chars[at + 1..].iter().take_while(|c| **c == '#').count();
    let mut j = at + 1 + hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// The end of the string or character literal quoted by `quote` that starts at `at`, escapes
/// passed over.
fn quoted_end(chars: &[char], at: usize, quote: char) -> usize {
    let mut i = at + 1;
    while i < chars.len() && chars[i] != quote {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Each function with a body in a piece of code: its name, the line it starts on and how many
/// lines it spans, found by counting braces.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let chars = blank_literals(code);
    let line_at = |at: usize| 1 + chars[..at].iter().filter(|c| **c == '\n').count();
    let mut found = Vec::new();
    for at in 0..chars.len().saturating_sub(2) {
        let keyword = chars[at] == 'f'
            && chars[at + 1] == 'n'
            && chars[at + 2].is_whitespace()
            && (at == 0 || !is_ident(chars[at - 1]));
        if !keyword {
            continue;
        }
        let mut i = at + 2;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let name: String = chars[i..].iter().take_while(|c| is_ident(**c)).collect();
        if name.is_empty() {
            continue;
        }
        // The body is the first `{` outside parentheses and brackets; a `;` there first is a
        // declaration without one.
        let mut depth = 0i32;
        let mut body = None;
        while i < chars.len() {
            match chars[i] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => break,
                '{' if depth == 0 => {
                    body = Some(i);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let Some(open) = body else { continue };
        let mut braces = 0i32;
        let mut close = open;
        for (j, c) in chars.iter().enumerate().skip(open) {
            match c {
                '{' => braces += 1,
                '}' => braces -= 1,
                _ => {}
            }
            if braces == 0 {
                close = j;
                break;
            }
        }
        let first = line_at(at);
        found.push((name, first, line_at(close) - first + 1));
    }
    found
}

#[test]
fn no_function_is_long() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut long = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let relative = relative.to_string_lossy().replace('\\', "/");
        for (name, line, lines) in functions(&code(file)) {
            if lines > MAX_FUNCTION_LINES {
                long.push(format!("{relative}:{line} {name} ({lines} lines)"));
            }
        }
    }
    assert!(long.is_empty(), "split these along their steps: {long:#?}");
}

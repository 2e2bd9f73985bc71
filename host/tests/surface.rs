//! The crate's root stays small: what every embedder uses is named there, and the rest lives in
//! topic modules. Read from `lib.rs`, so a name added at the root is a choice made here.

use std::path::Path;

/// How many names the root may export.
const MAX_ROOT_NAMES: usize = 20;

/// The names of the root's `pub use` items (not those inside `pub mod { .. }` blocks).
fn root_names(lib: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut statement: Option<String> = None;
    for line in lib.lines() {
        let trimmed = line.trim();
        if depth == 0 && statement.is_none() && trimmed.starts_with("pub use ") {
            statement = Some(String::new());
        }
        if let Some(text) = statement.as_mut() {
            text.push_str(trimmed);
            if trimmed.ends_with(';') {
                names.extend(used_names(text));
                statement = None;
            }
            continue;
        }
        depth += line.matches('{').count();
        depth = depth.saturating_sub(line.matches('}').count());
    }
    names
}

/// The names a `pub use path::{a, b};` or `pub use path::a;` brings in.
fn used_names(statement: &str) -> Vec<String> {
    let body = statement
        .trim_start_matches("pub use ")
        .trim_end_matches(';');
    let list = match body.find('{') {
        Some(open) => &body[open + 1..body.len() - 1],
        None => body.rsplit("::").next().unwrap_or(body),
    };
    list.split(',')
        .map(|name| name.rsplit(" as ").next().unwrap_or(name).trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn the_root_names_what_every_embedder_uses_and_no_more() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("lib.rs");
    let names = root_names(&lib);
    for expected in [
        "Host",
        "Call",
        "Reply",
        "CallError",
        "Principal",
        "CancelToken",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} at the root: {names:?}"
        );
    }
    assert!(
        names.len() <= MAX_ROOT_NAMES,
        "the root exports {} names (at most {MAX_ROOT_NAMES}); put the rest in a topic module: \
         {names:?}",
        names.len()
    );
}

#[test]
fn names_inside_topic_modules_are_not_counted_at_the_root() {
    let lib = "pub use a::{B, C};\npub mod topic {\n    pub use x::{D, E};\n}\npub use f::G;\n";
    assert_eq!(root_names(lib), ["B", "C", "G"]);
}

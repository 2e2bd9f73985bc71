//! No source file of the host, the plugin ABI or the CLI is longer than [`MAX_LINES`] lines of
//! code unless it says at its top why. A long file is most often several things grown together:
//! split along its seams, each part can be read in one sitting and named for what it does. The
//! rule is read from the source, so a file that grows past the limit fails here.
//!
//! A file's code is what comes before its trailing test modules (`#[cfg(test)]` or
//! `#[cfg(all(test, …))]` on a `mod` at its end): tests beside their code are welcome and do not
//! count. A file that truly is one indivisible thing says so in its opening doc comment, with a
//! `//! Longer than 400 lines: <reason>` line; having to write the reason keeps such files rare.

use std::path::{Path, PathBuf};

/// The source folders the rule holds for, relative to this crate.
const SOURCES: [&str; 3] = ["../host/src", "../plugin-abi/src", "../cli/src"];

/// Past this many lines of code, a file must say why it is longer.
const MAX_LINES: usize = 420;

/// How a file says why it is longer; the reason follows on the same line.
const REASON: &str = "//! Longer than 400 lines:";

#[test]
fn no_source_file_is_long_without_a_reason() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let long: Vec<String> = SOURCES
        .iter()
        .flat_map(|dir| rust_files(&crate_dir.join(dir)))
        .filter_map(|file| too_long(crate_dir, &file))
        .collect();
    assert!(
        long.is_empty(),
        "split these along their seams, or say at the top why not ({REASON} <reason>):\n{}",
        long.join("\n")
    );
}

#[test]
fn code_ends_where_the_trailing_test_modules_begin() {
    // How many lines are code, and the file.
    let cases = [
        (2, "fn a() {}\nfn b() {}\n"),
        (1, "fn a() {}\n\n#[cfg(test)]\nmod tests {\n}\n"),
        (
            1,
            "fn a() {}\n#[cfg(test)]\nmod a {\n}\n\n#[cfg(all(test, loom))]\nmod b {\n}\n",
        ),
        // A test-only helper is code, and so is a test module that code follows.
        (3, "#[cfg(test)]\nfn helper() {}\nfn a() {}\n"),
        (4, "#[cfg(test)]\nmod tests {\n}\nfn a() {}\n"),
    ];
    for (code, text) in cases {
        assert_eq!(code_lines(text), code, "{text}");
    }
}

/// Every `.rs` file under `dir`, in a stable order.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the source folder {}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `file (N code lines)` if `file` is over the limit and does not say why.
fn too_long(crate_dir: &Path, file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let lines = code_lines(&text);
    let shown = file.strip_prefix(crate_dir).unwrap_or(file).display();
    (lines > MAX_LINES && !says_why(&text)).then(|| format!("{shown} ({lines} code lines)"))
}

/// Whether the file's opening doc comment has a reason line with a reason on it.
fn says_why(text: &str) -> bool {
    text.lines()
        .take_while(|line| line.starts_with("//!"))
        .filter_map(|line| line.strip_prefix(REASON))
        .any(|reason| !reason.trim().is_empty())
}

/// How many lines come before the file's trailing test modules (all of them, if it has none),
/// not counting the blank lines that set the tests apart.
fn code_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let tests = (0..lines.len())
        .find(|&start| only_test_modules(&lines[start..]))
        .unwrap_or(lines.len());
    lines[..tests]
        .iter()
        .rposition(|line| !line.trim().is_empty())
        .map_or(0, |last| last + 1)
}

/// Whether `lines` are one or more test modules and nothing else but blank lines.
fn only_test_modules(mut lines: &[&str]) -> bool {
    while opens_test_module(lines) {
        match module_end(lines) {
            Some(end) => lines = &lines[end + 1..],
            None => return false,
        }
        while lines.first().is_some_and(|line| line.trim().is_empty()) {
            lines = &lines[1..];
        }
    }
    lines.is_empty()
}

/// Whether `lines` start with a test-only attribute on a `mod`.
fn opens_test_module(lines: &[&str]) -> bool {
    let Some((first, rest)) = lines.split_first() else {
        return false;
    };
    let test_only = first.starts_with("#[cfg(test)]") || first.starts_with("#[cfg(all(test");
    let item = rest.iter().find(|line| !line.starts_with("#["));
    test_only && item.is_some_and(|line| line.starts_with("mod ") || line.starts_with("pub mod "))
}

/// The index of the line that ends the module `lines` open: its `mod x;` line, or the `}` that
/// closes it (rustfmt puts it at the start of a line, as it does for any item at the top level).
fn module_end(lines: &[&str]) -> Option<usize> {
    let declaration = lines.iter().position(|line| !line.starts_with("#["))?;
    if lines[declaration].ends_with(';') {
        return Some(declaration);
    }
    lines
        .iter()
        .skip(declaration)
        .position(|line| *line == "}")
        .map(|at| declaration + at)
}

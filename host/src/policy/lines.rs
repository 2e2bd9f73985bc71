//! Where each plugin's grants and permission rules are written in a TOML policy, by line, so
//! that a warning or an explanation can name them. Read in a second pass over the text, which
//! ignores everything else (the first pass, in `parse.rs`, has already refused what is wrong).
//! A JSON policy has no lines to name: its entries are named by key alone.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

/// The lines (1-based) of one plugin's grants and rules, in the order they are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EntryLines {
    pub(crate) grants: Vec<usize>,
    pub(crate) permissions: Vec<usize>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    plugins: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    grants: Vec<Spanned<IgnoredAny>>,
    #[serde(default)]
    permissions: Vec<Spanned<IgnoredAny>>,
}

/// Each plugin's lines in TOML `text` (none if it does not parse, which the first pass reports).
pub(crate) fn read(text: &str) -> BTreeMap<String, EntryLines> {
    let Ok(document) = toml::from_str::<Document>(text) else {
        return BTreeMap::new();
    };
    let line = |spanned: &Spanned<IgnoredAny>| {
        let start = spanned.span().start.min(text.len());
        text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    document
        .plugins
        .into_iter()
        .map(|(id, entry)| {
            let lines = EntryLines {
                grants: entry.grants.iter().map(line).collect(),
                permissions: entry.permissions.iter().map(line).collect(),
            };
            (id, lines)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_rules_are_found_on_their_lines() {
        let text = "[host]\ndata_dir = \"d\"\n\n[plugins.a]\ngrants = [\n  \"kv\",\n  \"secrets:*\",\n]\n\n[[plugins.a.permissions]]\nactions = [\"x\"]\ndecision = \"deny\"\n\n[plugins.b]\ngrants = [\"kv\", \"timers\"]\n";
        let lines = read(text);
        assert_eq!(lines["a"].grants, [6, 7]);
        assert_eq!(lines["a"].permissions.len(), 1);
        assert!(
            (10..=11).contains(&lines["a"].permissions[0]),
            "{:?}",
            lines["a"]
        );
        assert_eq!(lines["b"].grants, [15, 15]);
        assert!(read("not toml [").is_empty());
    }
}

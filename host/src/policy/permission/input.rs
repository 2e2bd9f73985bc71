//! What a permission rule may ask of a call's input: `match = { "/cmd" = "git *" }`, JSON
//! pointers into the input, each with a glob (or a list of globs, any of which may match) that
//! the string found there must match.
//!
//! A glob is the policy's one glob: `*` matches any run of characters (none included, spaces,
//! `/` and `;` included), every other character only itself, case counts, and the glob must
//! match the whole string. So `git *` matches `git status` but not `gitx`, `git` or
//! `rm -rf / ; git status` — and it does match `git status; rm -rf /`: a glob reads a string,
//! not a shell command line, so a policy that allows `git *` puts a `deny` rule for `*;*`,
//! `*&*`, `*|*` and the like before it.
//!
//! A rule whose match cannot be read — the input is not JSON, a pointer finds nothing, or finds
//! something other than a string — neither matches nor is skipped: the call is refused
//! (`permission_denied`, saying which pointer and why), whatever the rule would have decided.
//! Skipping it could let a call through that a `deny` rule was written for.
//!
//! So is input that names a key twice in one object, at any depth: the rule would read the
//! last of the two, as this JSON reader keeps it, while a plugin whose reader keeps the first
//! (as many do) would act on the other — `{"cmd":"rm -rf /","cmd":"git status"}` must not pass
//! for `git status`. The check is made only when a rule with a `match` is reached.

use std::cell::OnceCell;

use airlock_abi::manifest::glob_match;
use serde::Deserialize;

/// The longest glob a `match` may hold.
const MAX_GLOB: usize = 1024;

/// One entry of a rule's `match`: a JSON pointer and the globs the string there may match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMatch {
    /// An RFC 6901 JSON pointer into the input (`/cmd`, `/args/0`; empty: the whole input).
    pub pointer: String,
    /// The globs, any one of which the string found there must match.
    pub globs: Vec<String>,
}

/// A `match` value as written: one glob or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawGlobs {
    One(String),
    Any(Vec<String>),
}

impl InputMatch {
    /// An entry of a rule's `match`; `at` names the rule in errors.
    pub(crate) fn from_raw(pointer: String, globs: RawGlobs, at: &str) -> Result<Self, String> {
        crate::policy::routines::check_pointer(&pointer)
            .map_err(|why| format!("{at}: match key {pointer:?} {why}"))?;
        let globs = match globs {
            RawGlobs::One(glob) => vec![glob],
            RawGlobs::Any(globs) => globs,
        };
        if globs.is_empty() || globs.iter().any(|g| g.is_empty() || g.len() > MAX_GLOB) {
            return Err(format!(
                "{at}: match {pointer:?} needs a glob, or a list of globs, each of 1 to \
                 {MAX_GLOB} characters (\"git *\", [\"ls\", \"ls *\"])"
            ));
        }
        Ok(Self { pointer, globs })
    }
}

/// What one rule's `match` says of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputCheck {
    /// Every pointer finds a string one of its globs matches (or the rule has no `match`).
    Matches,
    /// A pointer finds a string none of its globs matches: the rule does not apply.
    Differs {
        /// The pointer.
        pointer: String,
    },
    /// A pointer cannot be read, for this reason: the call is refused.
    Unreadable(String),
}

/// A call's input, parsed as JSON at most once, and only when a rule with a `match` asks.
pub(crate) struct Input<'a> {
    bytes: &'a [u8],
    parsed: OnceCell<Result<serde_json::Value, String>>,
}

impl<'a> Input<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            parsed: OnceCell::new(),
        }
    }

    /// The input as JSON, or why a rule cannot read it (`first` names the pointer it reads).
    fn json(&self, first: &InputMatch) -> Result<&serde_json::Value, String> {
        let not_json = || {
            format!(
                "the input is not JSON, so {} cannot be read",
                first.pointer_name()
            )
        };
        self.parsed
            .get_or_init(|| {
                let text = std::str::from_utf8(self.bytes).map_err(|_| not_json())?;
                crate::policy::json::refuse_duplicate_keys(text).map_err(|why| {
                    format!("the input names a key twice, so a match cannot trust it: {why}")
                })?;
                serde_json::from_str(text).map_err(|_| not_json())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// What `matches` (all of them) say of this input.
    pub(crate) fn check(&self, matches: &[InputMatch]) -> InputCheck {
        if matches.is_empty() {
            return InputCheck::Matches;
        }
        let json = match self.json(&matches[0]) {
            Ok(json) => json,
            Err(why) => return InputCheck::Unreadable(why),
        };
        for m in matches {
            let found = match json.pointer(&m.pointer) {
                None => {
                    return InputCheck::Unreadable(format!(
                        "the input has nothing at {}",
                        m.pointer_name()
                    ))
                }
                Some(serde_json::Value::String(s)) => s,
                Some(other) => {
                    return InputCheck::Unreadable(format!(
                        "the input has {} at {}, and a match reads strings only",
                        kind(other),
                        m.pointer_name()
                    ))
                }
            };
            if !m.globs.iter().any(|g| glob_match(g, found)) {
                return InputCheck::Differs {
                    pointer: m.pointer.clone(),
                };
            }
        }
        InputCheck::Matches
    }
}

impl InputMatch {
    /// The pointer as messages name it (the empty one is the whole input).
    fn pointer_name(&self) -> String {
        if self.pointer.is_empty() {
            "the whole input (\"\")".to_owned()
        } else {
            format!("{:?}", self.pointer)
        }
    }
}

/// What a JSON value is, for messages (never the value itself: it may be secret).
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pointer: &str, globs: &[&str]) -> InputMatch {
        InputMatch {
            pointer: pointer.to_owned(),
            globs: globs.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn check(matches: &[InputMatch], input: &str) -> InputCheck {
        Input::new(input.as_bytes()).check(matches)
    }

    #[test]
    fn a_glob_matches_the_whole_string_and_nothing_more() {
        let git = [m("/cmd", &["git *"])];
        for cmd in [
            "git status",
            "git ",
            "git log --oneline",
            "git status; rm -rf /",
        ] {
            let input = serde_json::json!({ "cmd": cmd }).to_string();
            assert_eq!(check(&git, &input), InputCheck::Matches, "{cmd:?}");
        }
        for cmd in [
            "gitx",
            "git",
            "gitx status",
            "rm -rf / ; git status",
            " git status",
            "GIT status",
            "\ngit status",
        ] {
            let input = serde_json::json!({ "cmd": cmd }).to_string();
            assert_eq!(
                check(&git, &input),
                InputCheck::Differs {
                    pointer: "/cmd".into()
                },
                "{cmd:?}"
            );
        }
        let any = [m("/cmd", &["ls", "ls *"])];
        assert_eq!(check(&any, r#"{"cmd":"ls"}"#), InputCheck::Matches);
        assert_eq!(check(&any, r#"{"cmd":"ls -la"}"#), InputCheck::Matches);
        assert!(matches!(
            check(&any, r#"{"cmd":"lsof"}"#),
            InputCheck::Differs { .. }
        ));
    }

    #[test]
    fn what_cannot_be_read_is_said_and_never_a_match() {
        let git = [m("/cmd", &["*"])];
        for (input, says) in [
            ("not json", "not JSON"),
            ("", "not JSON"),
            (r#"{"cmd":"git"} trailing"#, "not JSON"),
            (r#"{"other":"git status"}"#, "nothing at \"/cmd\""),
            ("null", "nothing at"),
            (r#"{"cmd":5}"#, "a number"),
            (r#"{"cmd":["git","status"]}"#, "an array"),
            (r#"{"cmd":null}"#, "null"),
            (r#"{"cmd":{"0":"git"}}"#, "an object"),
        ] {
            match check(&git, input) {
                InputCheck::Unreadable(why) => assert!(why.contains(says), "{input}: {why}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        // Input nested past the JSON reader's depth limit is not JSON to a rule, never a
        // match.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(check(&git, &deep), InputCheck::Unreadable(_)));
        // A key named twice, at any depth, is refused, whichever of the two the rule reads.
        for input in [
            r#"{"cmd":"rm -rf /","cmd":"git status"}"#,
            r#"{"cmd":"git status","cmd":"rm -rf /"}"#,
            r#"{"cmd":"git status","opts":{"a":1,"a":2}}"#,
            r#"{"cmd":"git status","list":[{"x":1},{"x":1,"x":2}]}"#,
        ] {
            match check(&git, input) {
                InputCheck::Unreadable(why) => {
                    assert!(why.contains("names a key twice"), "{input}: {why}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        // The same key in two objects is no duplicate.
        assert_eq!(
            check(&git, r#"{"cmd":"git","a":{"cmd":1},"b":[{"cmd":2}]}"#),
            InputCheck::Matches
        );
        // A rule with two pointers needs both; the first that differs is named.
        let two = [m("/a", &["x"]), m("/b", &["y*"])];
        assert_eq!(check(&two, r#"{"a":"x","b":"yes"}"#), InputCheck::Matches);
        assert_eq!(
            check(&two, r#"{"a":"x","b":"no"}"#),
            InputCheck::Differs {
                pointer: "/b".into()
            }
        );
        // Pointer escapes: "/a~1b" is the key "a/b".
        assert_eq!(
            check(&[m("/a~1b", &["v"])], r#"{"a/b":"v"}"#),
            InputCheck::Matches
        );
        // The whole input, when it is a string.
        assert_eq!(
            check(&[m("", &["hi*"])], r#""hi there""#),
            InputCheck::Matches
        );
    }

    #[test]
    fn bad_matches_are_refused_when_the_policy_is_read() {
        let at = "[plugins.p] permissions[0]";
        for (pointer, globs, says) in [
            ("cmd", RawGlobs::One("x".into()), "must start with '/'"),
            ("/a~2", RawGlobs::One("x".into()), "'~'"),
            ("/cmd", RawGlobs::One(String::new()), "needs a glob"),
            ("/cmd", RawGlobs::Any(Vec::new()), "needs a glob"),
            (
                "/cmd",
                RawGlobs::One("x".repeat(MAX_GLOB + 1)),
                "needs a glob",
            ),
        ] {
            let err = InputMatch::from_raw(pointer.to_owned(), globs, at).expect_err(pointer);
            assert!(err.contains(says) && err.starts_with(at), "{err}");
        }
    }
}

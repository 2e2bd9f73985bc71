//! Routines: the operator's rules that turn an event into a call. Each `[[routines]]` entry
//! names a topic glob, an optional `match` (JSON pointers into the payload, each with the value
//! it must equal) and a target action; when an event is published on a matching topic with a
//! matching payload — by a plugin or by the host program — the host calls the target with the
//! payload as its input, on behalf of the publisher, off the publisher's thread.
//!
//! ```toml
//! [[routines]]
//! name = "ship-paid-orders"
//! topic = "orders.*"
//! match = { "/status" = "paid" }
//! plugin = "fulfil"
//! action = "ship"
//! retries = 2          # optional; without any retry key, the target's dispatch retries
//! backoff_ms = 50
//! ```

use std::collections::BTreeMap;

use airlock_abi::manifest::{glob_match, PluginId};
use serde::Deserialize;

use super::retry::{RetryPolicy, DEFAULT_RETRY};

/// The most routines one policy may hold.
pub const MAX_ROUTINES: usize = 256;

/// One routine: which events start it and which action it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    /// Its name, unique in the policy: audit records and [`crate::Host::routine_runs`] use it.
    pub name: String,
    /// The topics it listens to (`*` matches any run of characters).
    pub topic: String,
    /// JSON pointers into the payload, each with the value found there must equal; all must.
    pub matches: Vec<(String, serde_json::Value)>,
    /// The plugin called.
    pub plugin: PluginId,
    /// Its action called, with the event's payload as input.
    pub action: String,
    /// How a retryable answer is retried; `None`: as the target's dispatch retries
    /// (`dispatch_retries`, `dispatch_backoff_ms`, `dispatch_backoff_max_ms`).
    pub retry: Option<RetryPolicy>,
}

impl Routine {
    /// Whether an event on `topic` with `payload` starts it.
    pub fn matches(&self, topic: &str, payload: &serde_json::Value) -> bool {
        glob_match(&self.topic, topic)
            && self
                .matches
                .iter()
                .all(|(pointer, expected)| payload.pointer(pointer) == Some(expected))
    }
}

/// A `[[routines]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoutine {
    #[serde(default)]
    name: String,
    #[serde(default)]
    topic: String,
    #[serde(default, rename = "match")]
    matches: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    action: String,
    retries: Option<u32>,
    backoff_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
}

/// Checks every routine: names present and unique, the topic a glob of topic characters, each
/// match key a JSON pointer, the target a plugin id and an action name.
pub(super) fn routines(raw: Vec<RawRoutine>) -> Result<Vec<Routine>, String> {
    if raw.len() > MAX_ROUTINES {
        return Err(format!(
            "[[routines]]: {} routines; at most {MAX_ROUTINES} are allowed",
            raw.len()
        ));
    }
    let mut out: Vec<Routine> = Vec::with_capacity(raw.len());
    for (n, entry) in raw.into_iter().enumerate() {
        let routine = routine(n, entry)?;
        if out.iter().any(|r| r.name == routine.name) {
            return Err(format!(
                "[[routines]] {:?}: the name is used by another routine; each needs its own",
                routine.name
            ));
        }
        out.push(routine);
    }
    Ok(out)
}

fn routine(n: usize, raw: RawRoutine) -> Result<Routine, String> {
    let name = raw.name.trim().to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "[[routines]] entry {n} (from 0): `name` must be a non-empty name without spaces"
        ));
    }
    let at = format!("[[routines]] {name:?}");
    let topic_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*');
    if raw.topic.is_empty() || !raw.topic.chars().all(topic_chars) {
        return Err(format!(
            "{at}: topic {:?} must be a topic or a glob of a-z, A-Z, 0-9, '-', '_', '.' and '*'",
            raw.topic
        ));
    }
    for pointer in raw.matches.keys() {
        check_pointer(pointer).map_err(|why| format!("{at}: match key {pointer:?} {why}"))?;
    }
    let plugin = PluginId::new(&raw.plugin).map_err(|e| format!("{at}: plugin: {e}"))?;
    if raw.action.is_empty() {
        return Err(format!("{at}: `action` names the target's action to call"));
    }
    let retry = (raw.retries.is_some() || raw.backoff_ms.is_some() || raw.backoff_max_ms.is_some())
        .then(|| DEFAULT_RETRY.with(raw.retries, raw.backoff_ms, raw.backoff_max_ms));
    Ok(Routine {
        name,
        topic: raw.topic,
        matches: raw.matches.into_iter().collect(),
        plugin,
        action: raw.action,
        retry,
    })
}

/// A JSON pointer (RFC 6901): empty (the whole payload), or `/`-separated tokens where `~` is
/// only ever `~0` or `~1`.
pub(crate) fn check_pointer(pointer: &str) -> Result<(), &'static str> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err("is not a JSON pointer: it must start with '/' (e.g. \"/status\")");
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("is not a JSON pointer: '~' must be followed by 0 or 1");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::{Policy, PolicyFormat};

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(text, PolicyFormat::Toml)
    }

    #[test]
    fn routines_are_read_with_their_matches_and_retries() {
        let policy = parse(
            r#"
            [[routines]]
            name = "ship"
            topic = "orders.*"
            match = { "/status" = "paid", "/items/0/sku" = "a~1b" }
            plugin = "fulfil"
            action = "ship"
            retries = 2
            backoff_ms = 5

            [[routines]]
            name = "all"
            topic = "*"
            plugin = "log-all"
            action = "record"
            "#,
        )
        .expect("valid");
        let [ship, all] = policy.routines() else {
            panic!("two routines: {:?}", policy.routines())
        };
        assert_eq!(ship.plugin.as_str(), "fulfil");
        let retry = ship.retry.expect("set");
        assert_eq!((retry.retries, retry.backoff.as_millis()), (2, 5));
        assert_eq!(all.retry, None, "the target's dispatch retries");
        let paid = json!({"status": "paid", "items": [{"sku": "a~1b"}]});
        assert!(ship.matches("orders.created", &paid));
        assert!(!ship.matches("billing.created", &paid), "another topic");
        assert!(!ship.matches("orders.created", &json!({"status": "open"})));
        assert!(
            !ship.matches("orders.created", &json!({"status": "paid"})),
            "all must"
        );
        // Equal means equal JSON: the string "1" is not the number 1.
        assert!(all.matches("anything", &json!(null)));
        // JSON reads them the same way.
        let json = Policy::parse(
            r#"{"routines": [{"name": "n", "topic": "t", "match": {"/n": 1},
                "plugin": "p", "action": "a"}]}"#,
            PolicyFormat::Json,
        )
        .expect("valid");
        assert!(json.routines()[0].matches("t", &json!({"n": 1})));
        assert!(!json.routines()[0].matches("t", &json!({"n": "1"})));
    }

    #[test]
    fn a_bad_routine_is_refused_naming_it() {
        let entry = |fields: &str| format!("[[routines]]\n{fields}\n");
        for (text, says) in [
            (
                entry(
                    r#"topic = "t"
plugin = "p"
action = "a""#,
                ),
                "entry 0 (from 0): `name`",
            ),
            (
                entry(
                    r#"name = "r"
topic = "orders created"
plugin = "p"
action = "a""#,
                ),
                r#"[[routines]] "r": topic "orders created""#,
            ),
            (
                entry(
                    r#"name = "r"
topic = "t"
match = { "status" = 1 }
plugin = "p"
action = "a""#,
                ),
                r#"[[routines]] "r": match key "status" is not a JSON pointer"#,
            ),
            (
                entry(
                    r#"name = "r"
topic = "t"
match = { "/a~2" = 1 }
plugin = "p"
action = "a""#,
                ),
                "'~' must be followed",
            ),
            (
                entry(
                    r#"name = "r"
topic = "t"
plugin = "P Q"
action = "a""#,
                ),
                r#"[[routines]] "r": plugin"#,
            ),
            (
                entry(
                    r#"name = "r"
topic = "t"
plugin = "p""#,
                ),
                "`action`",
            ),
            (
                entry(
                    r#"name = "r"
topic = "t"
plugin = "p"
action = "a"
colour = 1"#,
                ),
                "unknown field `colour`",
            ),
            (
                entry(
                    r#"name = "r"
topic = "t"
plugin = "p"
action = "a""#,
                )
                .repeat(2),
                "used by another routine",
            ),
        ] {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}

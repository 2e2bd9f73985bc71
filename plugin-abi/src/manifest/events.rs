//! The topics a plugin declares it publishes (`"events"` in `plugin.json`): a concrete topic
//! name, what it carries, and optionally the JSON Schema of its payload, which the host checks
//! every publication on that topic against. Each declared topic must be covered by one of the
//! plugin's declared `events.publish:<glob>` capabilities, and declared once. Publishing an
//! undeclared topic that a grant covers still works: declaring is how a plugin documents and
//! constrains a topic, not a second permission.

use serde::{Deserialize, Serialize};

use super::{covers, Capability, CapabilityKind, DeclaredCapability, ManifestError};

/// The longest topic name a manifest may declare.
pub const MAX_TOPIC_LEN: usize = 128;

/// One topic a plugin declares it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventDecl {
    /// The topic, e.g. `orders.created`: a concrete name (no `*`), covered by one of the
    /// plugin's `events.publish:<glob>` capabilities.
    pub topic: String,
    /// What the event means, shown in listings and the catalog.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema every payload published on the topic must match: the host refuses a
    /// publication that does not (`bad_request`, with the schema's message) and delivers
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
}

/// Whether `topic` is a name a manifest may declare: 1 to [`MAX_TOPIC_LEN`] characters of
/// a-z, A-Z, 0-9, `-`, `_` and `.`, neither starting nor ending with `.` nor holding `..`.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !topic.starts_with('.')
        && !topic.ends_with('.')
        && !topic.contains("..")
}

/// Checks the declared topics against the rules above.
pub(super) fn check_events(
    events: &[EventDecl],
    capabilities: &[DeclaredCapability],
) -> Result<(), ManifestError> {
    let err = |m: String| Err(ManifestError(m));
    let publish: Vec<Capability> = capabilities
        .iter()
        .map(|c| c.capability.clone())
        .filter(|c| c.kind() == CapabilityKind::EventsPublish)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for event in events {
        let topic = event.topic.as_str();
        if topic.contains('*') {
            return err(format!(
                "event topic {topic:?} is a pattern; a declared topic is one concrete name \
                 (declare each topic, or leave it undeclared)"
            ));
        }
        if !valid_topic(topic) {
            return err(format!(
                "event topic {topic:?} must be 1 to {MAX_TOPIC_LEN} characters of a-z, A-Z, \
                 0-9, '-', '_' and '.', without an empty segment"
            ));
        }
        if !seen.insert(topic) {
            return err(format!("event topic {topic:?} is declared twice"));
        }
        if !covers(&publish, CapabilityKind::EventsPublish, Some(topic)) {
            return err(format!(
                "event topic {topic:?} is not covered by any declared events.publish \
                 capability; declare \"events.publish:{topic}\" (or a glob covering it)"
            ));
        }
        if let Some(schema) = &event.schema {
            if !(schema.is_object() || schema.is_boolean()) {
                return err(format!(
                    "event topic {topic:?}'s schema must be a JSON Schema: an object (or true/false)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;

    fn with(capabilities: &str, events: &str) -> Result<Manifest, String> {
        Manifest::from_json(&format!(
            r#"{{"id":"p","version":"1.0.0","capabilities":{capabilities},"events":{events}}}"#
        ))
        .map_err(|e| e.0)
    }

    #[test]
    fn declared_topics_are_concrete_covered_and_declared_once() {
        let ok = with(
            r#"["events.publish:orders.*"]"#,
            r#"[{"topic":"orders.created","description":"a new order",
                 "schema":{"type":"object","required":["id"]}},{"topic":"orders.cancelled"}]"#,
        )
        .expect("valid");
        assert_eq!(ok.events.len(), 2);
        assert_eq!(ok.events[0].description, "a new order");
        assert!(ok.events[1].schema.is_none());
        // Without the key, nothing is declared (what every older manifest means).
        let none = Manifest::from_json(r#"{"id":"p","version":"1.0.0"}"#).expect("valid");
        assert!(none.events.is_empty());
        for (caps, events, says) in [
            (
                r#"["events.publish:*"]"#,
                r#"[{"topic":"orders.*"}]"#,
                "is a pattern",
            ),
            (r#"["events.publish:*"]"#, r#"[{"topic":""}]"#, "1 to 128"),
            (
                r#"["events.publish:*"]"#,
                r#"[{"topic":"a..b"}]"#,
                "empty segment",
            ),
            (
                r#"["events.publish:*"]"#,
                r#"[{"topic":"a b"}]"#,
                "characters",
            ),
            (
                r#"["events.publish:*"]"#,
                r#"[{"topic":"a"},{"topic":"a"}]"#,
                "declared twice",
            ),
            (
                r#"["events.publish:billing.*","events.subscribe:orders.*"]"#,
                r#"[{"topic":"orders.created"}]"#,
                "not covered by any declared events.publish",
            ),
            (r#"[]"#, r#"[{"topic":"x"}]"#, "events.publish:x"),
            (
                r#"["events.publish:*"]"#,
                r#"[{"topic":"x","schema":"object"}]"#,
                "must be a JSON Schema",
            ),
            (
                r#"["events.publish:*"]"#,
                r#"[{"topic":"x","colour":"red"}]"#,
                "unknown field `colour`",
            ),
        ] {
            let err = with(caps, events).expect_err(events);
            assert!(err.contains(says), "{events}: {err}");
        }
    }
}

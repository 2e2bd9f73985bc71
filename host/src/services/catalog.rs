//! The event catalog's run-time half: the topics published since the host started, by whom
//! (plugin ids, or `host` for the host program), how often and when last. Memory is bounded:
//! at most [`MAX_SEEN_TOPICS`] distinct topics are remembered (a topic first published after
//! that is counted in [`SeenTopics::unrecorded`] and not listed), each with at most
//! [`MAX_PUBLISHERS_PER_TOPIC`] publishers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use airlock_abi::wire::CallerInfo;
use parking_lot::Mutex;
use serde::Serialize;

/// The most distinct topics the catalog remembers.
pub const MAX_SEEN_TOPICS: usize = 1024;
/// The most publishers remembered per topic.
pub const MAX_PUBLISHERS_PER_TOPIC: usize = 16;
/// The name the catalog gives the host program as a publisher.
pub const HOST_PUBLISHER: &str = "host";

/// What the host knows of its topics ([`crate::Host::event_catalog`]): the ones its plugins
/// declare, and the ones published since it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventCatalog {
    /// The topics the loaded plugins declare, by plugin in load order.
    pub declared: Vec<DeclaredTopic>,
    /// The topics published so far, by name (at most [`MAX_SEEN_TOPICS`]).
    pub seen: Vec<SeenTopic>,
    /// Publications on topics first seen after [`MAX_SEEN_TOPICS`] were remembered.
    pub unrecorded: u64,
}

/// A topic a loaded plugin declares it publishes (`"events"` in its manifest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeclaredTopic {
    /// The topic.
    pub topic: String,
    /// The plugin that declares it.
    pub plugin: String,
    /// What it means.
    pub description: String,
    /// The JSON Schema its payloads must match, if declared.
    pub schema: Option<serde_json::Value>,
}

/// A topic published while the host ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenTopic {
    /// The topic.
    pub topic: String,
    /// Who published on it, in the order first seen: plugin ids, or [`HOST_PUBLISHER`] for the
    /// host program (at most [`MAX_PUBLISHERS_PER_TOPIC`]).
    pub publishers: Vec<String>,
    /// How many publications there were, refused ones not counted.
    pub count: u64,
    /// When the last was.
    pub last_seen: SystemTime,
}

/// The publisher's name in the catalog.
pub(crate) fn publisher_name(from: &CallerInfo) -> &str {
    match from {
        CallerInfo::Plugin { id, .. } => id,
        CallerInfo::Host { .. } => HOST_PUBLISHER,
    }
}

/// The topics seen, bounded.
#[derive(Debug, Default)]
pub(crate) struct SeenTopics {
    topics: Mutex<BTreeMap<String, SeenTopic>>,
    unrecorded: AtomicU64,
}

impl SeenTopics {
    /// Counts one publication on `topic` by `from`.
    pub(crate) fn record(&self, from: &CallerInfo, topic: &str) {
        let name = publisher_name(from);
        let now = SystemTime::now();
        let mut topics = self.topics.lock();
        if let Some(seen) = topics.get_mut(topic) {
            seen.count += 1;
            seen.last_seen = now;
            if seen.publishers.len() < MAX_PUBLISHERS_PER_TOPIC
                && !seen.publishers.iter().any(|p| p == name)
            {
                seen.publishers.push(name.to_owned());
            }
        } else if topics.len() < MAX_SEEN_TOPICS {
            topics.insert(
                topic.to_owned(),
                SeenTopic {
                    topic: topic.to_owned(),
                    publishers: vec![name.to_owned()],
                    count: 1,
                    last_seen: now,
                },
            );
        } else {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The topics seen, by name.
    pub(crate) fn list(&self) -> Vec<SeenTopic> {
        self.topics.lock().values().cloned().collect()
    }

    /// Publications on topics past [`MAX_SEEN_TOPICS`], which are counted here only.
    pub(crate) fn unrecorded(&self) -> u64 {
        self.unrecorded.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_counted_by_publisher_and_bounded() {
        let seen = SeenTopics::default();
        let plugin = CallerInfo::Plugin {
            id: "orders".into(),
            generation: 1,
        };
        let host = CallerInfo::Host { principal: None };
        seen.record(&plugin, "orders.created");
        seen.record(&host, "orders.created");
        seen.record(&plugin, "orders.created");
        let list = seen.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].publishers, ["orders", "host"]);
        assert_eq!(list[0].count, 3);
        for n in 0..MAX_SEEN_TOPICS + 5 {
            seen.record(&host, &format!("t{n}"));
        }
        assert_eq!(seen.list().len(), MAX_SEEN_TOPICS);
        assert_eq!(
            seen.unrecorded(),
            6,
            "one known topic plus the new ones past the cap"
        );
        // A topic already known is still counted once the cap is reached.
        seen.record(&host, "orders.created");
        assert_eq!(seen.list()[0].count, 4);
    }
}

//! Events from the host program's side of [`Host`]: publishing, the catalog of topics, and the
//! routines' runs.

use super::Host;

impl Host {
    /// Publishes an event from the host program itself (no capability needed); returns how
    /// many subscriptions it was queued for.
    ///
    /// The payload is not checked against a schema a plugin declares for the topic: those
    /// bind the plugin that declares them. The policy's routines matching it run on behalf of
    /// the host.
    pub fn publish(&self, topic: &str, payload: &serde_json::Value) -> usize {
        let host = airlock_abi::wire::CallerInfo::Host { principal: None };
        self.shared.events.publish(&host, topic, payload)
    }

    /// The topics the loaded plugins declare (with their schemas) and the topics published
    /// since the host started (by whom, how often, when last; at most
    /// [`crate::events::MAX_SEEN_TOPICS`] of them).
    pub fn event_catalog(&self) -> crate::events::EventCatalog {
        self.shared.event_catalog()
    }

    /// The last routine runs, oldest first (at most [`crate::events::ROUTINE_RUNS_KEPT`]);
    /// each is also an audit record (`routine`).
    pub fn routine_runs(&self) -> Vec<crate::events::RoutineRun> {
        self.shared.events.routines().runs()
    }

    /// Routine runs dropped because their queue was full ([`crate::events::ROUTINE_QUEUE`]),
    /// because routines started each other too deep ([`crate::events::MAX_ROUTINE_DEPTH`]), or
    /// because the host stopped first.
    pub fn routine_runs_dropped(&self) -> u64 {
        self.shared.events.routines().dropped()
    }
}

//! Event topics ([`Context::events`]): publishing, and subscriptions the host owns.

use serde::Serialize;

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, Request};

/// Event topics.
#[derive(Debug, Clone, Copy)]
pub struct Events<'c> {
    pub(super) ctx: &'c Context,
}

impl Events<'_> {
    /// Publishes `payload` on `topic`; returns how many subscriptions it went to. Delivery is
    /// asynchronous, on host threads.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] unless `events.publish:<glob>` covers the topic.
    pub fn publish<T: Serialize>(&self, topic: &str, payload: &T) -> Result<usize, ContextError> {
        let payload =
            serde_json::to_value(payload).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::EventsPublish,
            &wire::Publish {
                topic: topic.to_owned(),
                payload,
            },
        )
    }

    /// Subscribes to topics matching `pattern`; events arrive in `Plugin::on_event`. The host
    /// owns the subscription and removes it when the plugin is torn down.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] unless `events.subscribe:<glob>` covers the pattern.
    pub fn subscribe(&self, pattern: &str) -> Result<(), ContextError> {
        self.ctx.call_service(
            Request::EventsSubscribe,
            &wire::Pattern {
                pattern: pattern.to_owned(),
            },
        )
    }

    /// Removes a subscription made with the same pattern; true if there was one.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn unsubscribe(&self, pattern: &str) -> Result<bool, ContextError> {
        self.ctx.call_service(
            Request::EventsUnsubscribe,
            &wire::Pattern {
                pattern: pattern.to_owned(),
            },
        )
    }
}

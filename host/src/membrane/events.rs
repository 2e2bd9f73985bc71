//! The `events` service's operations: publishing on a topic and subscribing to a pattern, each
//! scoped by its topic or pattern. A subscription is owned by the host and keyed by the
//! context's token, so teardown removes it; one added as teardown begins is refused or undone.

use airlock_abi::abi::HostError;
use airlock_abi::manifest::CapabilityKind;
use airlock_abi::wire::{self, CallerInfo, Request};

use super::row::{row, Grant};
use super::{refuse_when_closing, undo_when_closing};
use crate::services::audit::AuditOutcome;
use crate::services::registry::{BuiltIn, Requester};
use crate::services::Observed;

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    let subscribe = || Grant::Scoped {
        kind: CapabilityKind::EventsSubscribe,
        what: "pattern",
        scope: |req: &wire::Pattern| &req.pattern,
    };
    vec![
        row(
            Request::EventsPublish,
            Grant::Scoped {
                kind: CapabilityKind::EventsPublish,
                what: "topic",
                scope: |req: &wire::Publish| &req.topic,
            },
            publish,
        ),
        row(Request::EventsSubscribe, subscribe(), self::subscribe),
        row(Request::EventsUnsubscribe, subscribe(), unsubscribe),
    ]
}

/// `events publish`: the number of subscriptions the event went to. A payload that does not
/// fit a schema declared for the topic — by the publishing plugin's manifest or another
/// loaded plugin's — is refused (`bad_request`, with
/// the schema's message; audited `event_refused`), and nothing is delivered or routed.
fn publish(r: &dyn Requester, req: wire::Publish) -> Result<usize, HostError> {
    let (plugin, generation) = (r.plugin(), r.generation());
    if let Err(message) = r
        .host()
        .check_event(plugin, generation, &req.topic, &req.payload)
    {
        let capability = format!("events.publish:{}", req.topic);
        let refused = AuditOutcome::EventRefused;
        (r.host().audit()).record(plugin.as_str(), generation, &capability, refused, &message);
        return Err(super::bad_request(message));
    }
    if r.observed() {
        r.host().observe(
            r.plugin(),
            Observed::Published {
                topic: req.topic.clone(),
                payload: req.payload.clone(),
            },
        );
    }
    let from = CallerInfo::Plugin {
        id: plugin.to_string(),
        generation,
    };
    Ok(r.host().events().publish(&from, &req.topic, &req.payload))
}

fn subscribe(r: &dyn Requester, req: wire::Pattern) -> Result<(), HostError> {
    refuse_when_closing(r)?;
    crate::failpoint::hit(crate::failpoint::SUBSCRIBE_CHECKED);
    let events = r.host().events();
    events.subscribe(r.token(), &req.pattern);
    undo_when_closing(r, || events.unsubscribe(r.token(), &req.pattern))
}

/// `events unsubscribe`: whether there was such a subscription.
fn unsubscribe(r: &dyn Requester, req: wire::Pattern) -> Result<bool, HostError> {
    Ok(r.host().events().unsubscribe(r.token(), &req.pattern))
}

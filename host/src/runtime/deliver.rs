//! Events and timer runs delivered through the one invoke path, to the instance of the context
//! that subscribed or scheduled them (and to no successor of it).

use std::sync::atomic::Ordering;

use airlock_abi::abi::{ContextToken, InvocationKind};

use crate::error::CallErrorCode;
use crate::services::delivery::{Deliver, Delivered};
use crate::sync::hazard::this_thread;

use super::called::{message, Called};
use super::shared::HostShared;

impl Deliver for HostShared {
    fn deliver(
        &self,
        token: ContextToken,
        kind: InvocationKind,
        name: &str,
        payload: &[u8],
    ) -> Delivered {
        let plugins = self.table();
        let Some(plugin) = plugins
            .iter()
            .find(|p| p.running.with(|r| r.is_some_and(|r| r.token == token)))
        else {
            return Delivered::Done;
        };
        crate::failpoint::hit(crate::failpoint::DELIVER_MATCHED);
        let mut out = Vec::new();
        let delivered = match self.invoke_into(
            this_thread(),
            plugin,
            Some(token),
            kind,
            0,
            name,
            payload,
            &mut out,
        ) {
            Called::Answered
            | Called::Domain
            | Called::Retryable
            | Called::Pending
            | Called::Deferred => true,
            // Torn down since it was found: it was for that instance, not for its successor.
            Called::Failed(CallErrorCode::Revoked) => false,
            Called::Failed(CallErrorCode::Busy)
                if crate::services::delivery::on_service_thread() =>
            {
                tracing::debug!(plugin = %plugin.id(), name, "busy: delivery passed over");
                return Delivered::Busy;
            }
            Called::Failed(code) => {
                let message = message(&out);
                tracing::warn!(plugin = %plugin.id(), name, %code, "delivery failed: {message}");
                true
            }
        };
        if delivered {
            let counter = if kind == InvocationKind::TIMER {
                &plugin.counters.timer_runs
            } else {
                &plugin.counters.events
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Delivered::Done
    }
}

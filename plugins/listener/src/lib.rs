//! `listener`: subscribes to `demo.*` at creation; the host delivers each event on its own
//! threads and removes the subscription at teardown, so a re-created listener never hears an
//! event twice. It depends on `ticker` (`depends_on` in its manifest, optionally: it loads
//! without it): the host creates ticker first, tells listener `started` once both are up, and
//! tears listener down first. Its
//! `digest` action is the target of the demo policy's routine: the host calls it for each
//! digest run by hand, on behalf of ticker, which published the event.

use std::sync::Mutex;

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
struct Heard {
    count: u64,
    last_topic: Option<String>,
    last_payload: Option<serde_json::Value>,
    /// What the policy's routine handed to `digest`: how often, the last payload, and who the
    /// call was made for (the event's publisher).
    routed: u64,
    routed_last: Option<serde_json::Value>,
    routed_for: Option<String>,
}

/// The plugin.
pub struct Listener {
    ctx: Context,
    heard: Mutex<Heard>,
}

impl Plugin for Listener {
    fn create(ctx: Context) -> Result<Self, InitError> {
        ctx.events().subscribe("demo.*")?;
        Ok(Self {
            ctx,
            heard: Mutex::new(Heard::default()),
        })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("heard", |this: &Self, (): ()| {
                let heard = this
                    .heard
                    .lock()
                    .map_err(|_| ActionError::new("poisoned"))?;
                Ok::<_, ActionError>(heard.clone())
            })
            .add("digest", |this: &Self, run: serde_json::Value| {
                let caller = this.ctx.caller()?;
                let mut heard = this
                    .heard
                    .lock()
                    .map_err(|_| ActionError::new("poisoned"))?;
                heard.routed += 1;
                heard.routed_last = Some(run);
                heard.routed_for = Some(caller.to_string());
                Ok::<_, ActionError>(heard.routed)
            });
    }

    fn started(&self) {
        self.ctx
            .info("started: every plugin is up, ticker (which listener depends on) created first");
    }

    fn on_event(&self, topic: &str, payload: &serde_json::Value) {
        if let Ok(mut heard) = self.heard.lock() {
            heard.count += 1;
            heard.last_topic = Some(topic.to_owned());
            heard.last_payload = Some(payload.clone());
        }
    }
}

airlock_abi::export_plugin!(Listener);

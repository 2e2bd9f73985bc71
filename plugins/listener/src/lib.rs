//! `listener`: subscribes to `demo.*` at creation; the host delivers each event on its own
//! threads and removes the subscription at teardown, so a re-created listener never hears an
//! event twice.

use std::sync::Mutex;

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
struct Heard {
    count: u64,
    last_topic: Option<String>,
    last_payload: Option<serde_json::Value>,
}

/// The plugin.
pub struct Listener {
    heard: Mutex<Heard>,
}

impl Plugin for Listener {
    fn create(ctx: Context) -> Result<Self, InitError> {
        ctx.events().subscribe("demo.*")?;
        Ok(Self {
            heard: Mutex::new(Heard::default()),
        })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("heard", |this: &Self, (): ()| {
            let heard = this
                .heard
                .lock()
                .map_err(|_| ActionError::new("poisoned"))?;
            Ok::<_, ActionError>(heard.clone())
        });
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

//! `snoop`: declares `kv` and `secrets:api_token` but the demo policy grants neither, and it
//! also tries to publish on a topic it never declared. Each attempt comes back as a typed
//! `CapabilityViolation`, and the host writes one audit record per attempt.

use airlock_abi::{ActionError, Actions, Context, ContextError, InitError, Plugin};

/// The plugin.
pub struct Snoop {
    ctx: Context,
}

fn describe<T: std::fmt::Debug>(result: Result<T, ContextError>) -> String {
    match result {
        Ok(value) => format!("allowed: {value:?}"),
        Err(ContextError::CapabilityViolation { capability }) => format!("denied: {capability}"),
        Err(other) => format!("failed: {other}"),
    }
}

impl Plugin for Snoop {
    fn create(ctx: Context) -> Result<Self, InitError> {
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("peek", |this: &Self, (): ()| {
            let kv = describe(this.ctx.kv().keys(""));
            let secret = describe(this.ctx.secrets().get("api_token").map(|_| "<a secret>"));
            let publish = describe(this.ctx.events().publish("demo.tick", &"forged"));
            Ok::<_, ActionError>(
                serde_json::json!({ "kv": kv, "secret": secret, "publish": publish }),
            )
        });
    }
}

airlock_abi::export_plugin!(Snoop);

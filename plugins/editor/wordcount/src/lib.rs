//! `wordcount`: counts the words of an editor buffer, read through the editor's own service
//! (`service:editor.read`, from the interface crate `airlock-contract-editor`). It claims
//! `stats.buffer`, so `host.dispatch("stats.buffer").json(..)` reaches it — and no second plugin may
//! claim that kind while it is loaded.

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
use airlock_contract_editor::{Buffer, ReadBuffer};

/// The plugin.
pub struct Wordcount {
    ctx: Context,
}

impl Plugin for Wordcount {
    fn create(ctx: Context) -> Result<Self, InitError> {
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("count", |this: &Self, input: Buffer| {
            let text = this.ctx.service::<ReadBuffer>(&input)?;
            Ok::<_, ActionError>(text.split_whitespace().count())
        });
    }
}

airlock_abi::export_plugin!(Wordcount);

#[cfg(test)]
mod tests {
    use airlock::services::ServiceError;
    use airlock::testing::TestHost;
    use airlock::Reply;
    use airlock_contract_editor::ReadBuffer;
    use serde_json::json;

    use super::Wordcount;

    #[test]
    fn counts_the_words_the_editor_service_answers_and_needs_its_grant() {
        // A fake editor: one buffer.
        let fake =
            |_: &airlock::services::Caller, input: airlock_contract_editor::Buffer| match input
                .buffer
                .as_str()
            {
                "notes" => Ok("three short words".to_owned()),
                other => Err(ServiceError::new(format!("no buffer {other:?}"))),
            };
        let plugin = TestHost::new()
            .grants(&["service:editor.read"])
            .operation::<ReadBuffer>(fake)
            .create::<Wordcount>()
            .expect("created");
        assert_eq!(
            plugin.call::<_, usize>("count", &json!({"buffer": "notes"})),
            Ok(Reply::Ok(3))
        );
        let missing = plugin
            .call::<_, usize>("count", &json!({"buffer": "todo"}))
            .expect("answers");
        assert!(
            matches!(&missing, Reply::Error(e) if e.contains("no buffer")),
            "{missing:?}"
        );
        plugin.teardown().expect("clean");

        // Without the grant, the same call is a capability violation, audited.
        let plugin = TestHost::new()
            .grants(&[])
            .operation::<ReadBuffer>(fake)
            .create::<Wordcount>()
            .expect("created");
        let denied = plugin
            .call::<_, usize>("count", &json!({"buffer": "notes"}))
            .expect_err("denied");
        assert_eq!(denied.code, airlock::CallErrorCode::CapabilityViolation);
        assert_eq!(plugin.denials(), ["service:editor.read"]);
    }
}

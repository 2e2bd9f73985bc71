//! `kv-counter`: a count kept in the plugin's key/value namespace, so it survives a restart of
//! the host. Declares `kv` as required: without the grant the host refuses it (`not_granted`).
//! Declared `serial`, so increments never race.

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
use serde::Deserialize;

const KEY: &str = "count";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncrementInput {
    #[serde(default = "one")]
    by: u64,
}

fn one() -> u64 {
    1
}

/// The plugin.
pub struct KvCounter {
    ctx: Context,
}

impl KvCounter {
    fn current(&self) -> Result<u64, ActionError> {
        Ok(self.ctx.kv().get::<u64>(KEY)?.unwrap_or(0))
    }
}

impl Plugin for KvCounter {
    fn create(ctx: Context) -> Result<Self, InitError> {
        let start = ctx.kv().get::<u64>(KEY)?.unwrap_or(0);
        ctx.info(&format!("starting at {start}"));
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("increment", |this: &Self, input: Option<IncrementInput>| {
                let by = input.map_or(1, |i| i.by);
                let next = this
                    .current()?
                    .checked_add(by)
                    .ok_or_else(|| ActionError::new("the count overflowed"))?;
                this.ctx.kv().set(KEY, &next)?;
                Ok(next)
            })
            .add("get", |this: &Self, (): ()| this.current());
    }
}

airlock_abi::export_plugin!(KvCounter);

#[cfg(test)]
mod tests {
    use airlock::testing::TestHost;
    use airlock::Reply;
    use serde_json::json;

    use super::KvCounter;

    #[test]
    fn counts_in_the_store_and_fails_cleanly_without_the_grant() {
        let counter = TestHost::new().create::<KvCounter>().expect("created");
        assert_eq!(
            counter.call::<_, u64>("increment", &json!({"by": 2})),
            Ok(Reply::Ok(2))
        );
        assert_eq!(counter.call::<_, u64>("increment", &()), Ok(Reply::Ok(3)));
        assert_eq!(counter.kv()["count"], 3);
        counter.teardown().expect("a clean teardown");

        // Without the grant, creation fails: it reads the count in create.
        let refused = TestHost::new().grants(&[]).create::<KvCounter>();
        assert!(refused.is_err());
    }
}

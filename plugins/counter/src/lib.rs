//! `counter`: in-memory state behind `&self`, declared `parallel`, so the host may call it from
//! several threads at once. The count lives as long as the instance: a new instance starts at 0.

use std::sync::atomic::{AtomicU64, Ordering};

use airlock_abi::{ActionError, Actions, Context, Health, InitError, Plugin};
use serde::Deserialize;

/// The input of `increment`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncrementInput {
    #[serde(default = "one")]
    by: u64,
}

fn one() -> u64 {
    1
}

impl Default for IncrementInput {
    fn default() -> Self {
        Self { by: one() }
    }
}

/// How many instances this copy of the library has created. A static lives once per loaded
/// library, so a fresh shadow copy starts again at zero.
static CREATED: AtomicU64 = AtomicU64::new(0);

/// The plugin.
pub struct Counter {
    ctx: Context,
    value: AtomicU64,
}

impl Plugin for Counter {
    fn create(ctx: Context) -> Result<Self, InitError> {
        CREATED.fetch_add(1, Ordering::SeqCst);
        Ok(Self {
            ctx,
            value: AtomicU64::new(0),
        })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("increment", |this: &Self, input: Option<IncrementInput>| {
                let by = input.unwrap_or_default().by;
                let previous = this.value.fetch_add(by, Ordering::SeqCst);
                previous
                    .checked_add(by)
                    .ok_or_else(|| ActionError::new("the counter overflowed"))
            })
            .add("get", |this: &Self, (): ()| {
                Ok::<_, ActionError>(this.value.load(Ordering::SeqCst))
            })
            .add("created", |_: &Self, (): ()| {
                Ok::<_, ActionError>(CREATED.load(Ordering::SeqCst))
            })
            .add("reset", |this: &Self, (): ()| {
                this.value.store(0, Ordering::SeqCst);
                this.ctx.info("reset to 0");
                Ok::<_, ActionError>(0u64)
            });
    }

    fn health(&self) -> Health {
        if self.value.load(Ordering::SeqCst) > u64::MAX / 2 {
            Health::Degraded("the counter is past half its range".to_owned())
        } else {
            Health::Ok
        }
    }
}

airlock_abi::export_plugin!(Counter);

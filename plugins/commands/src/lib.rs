//! `commands`: plain actions the demo console reaches as `/echo`, `/reverse`, `/roll`, `/time`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};

/// The plugin.
pub struct Commands {
    seed: AtomicU64,
}

impl Plugin for Commands {
    fn create(_ctx: Context) -> Result<Self, InitError> {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(7, |d| d.as_nanos() as u64)
            | 1;
        Ok(Self {
            seed: AtomicU64::new(seed),
        })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("echo", |_: &Self, input: serde_json::Value| {
                Ok::<_, ActionError>(input)
            })
            .add("reverse", |_: &Self, text: String| {
                Ok::<_, ActionError>(text.chars().rev().collect::<String>())
            })
            .add("roll", |this: &Self, sides: Option<u64>| {
                let sides = sides.unwrap_or(6);
                if sides == 0 {
                    return Err(ActionError::new("a die needs at least one side"));
                }
                // xorshift: good enough for dice.
                let mut x = this.seed.load(Ordering::Relaxed);
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                this.seed.store(x, Ordering::Relaxed);
                Ok(x % sides + 1)
            })
            .add("time", |_: &Self, (): ()| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| ActionError::new(e.to_string()))?;
                Ok(now.as_secs())
            });
    }
}

airlock_abi::export_plugin!(Commands);

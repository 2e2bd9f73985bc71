//! `wordfreq`: counts the distinct words of an editor buffer. It claims `stats.buffer` like
//! `wordcount`, so whichever of the two loads second is refused `claim_conflict`.

use std::collections::BTreeSet;

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
use airlock_contract_editor::{Buffer, ReadBuffer};

/// The plugin.
pub struct Wordfreq {
    ctx: Context,
}

impl Plugin for Wordfreq {
    fn create(ctx: Context) -> Result<Self, InitError> {
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("distinct", |this: &Self, input: Buffer| {
            let text = this.ctx.service::<ReadBuffer>(&input)?;
            let words: BTreeSet<&str> = text.split_whitespace().collect();
            Ok::<_, ActionError>(words.len())
        });
    }
}

airlock_abi::export_plugin!(Wordfreq);

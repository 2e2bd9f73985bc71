//! `formatter`: shows an editor buffer in capitals (`shout`, which only reads it) or writes it
//! back so (`apply`, which also replaces it). It declares both `service:editor.read` and
//! `service:editor.replace`; what it may really do is what the operator grants.

use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
use airlock_contract_editor::{Buffer, ReadBuffer, Replace, ReplaceBuffer};

/// The plugin.
pub struct Formatter {
    ctx: Context,
}

impl Formatter {
    fn shouted(&self, input: &Buffer) -> Result<String, ActionError> {
        Ok(self.ctx.service::<ReadBuffer>(input)?.to_uppercase())
    }
}

impl Plugin for Formatter {
    fn create(ctx: Context) -> Result<Self, InitError> {
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("shout", |this: &Self, input: Buffer| this.shouted(&input))
            .add("apply", |this: &Self, input: Buffer| {
                let text = this.shouted(&input)?;
                this.ctx.service::<ReplaceBuffer>(&Replace {
                    buffer: input.buffer,
                    text: text.clone(),
                })?;
                Ok::<_, ActionError>(text)
            });
    }
}

airlock_abi::export_plugin!(Formatter);

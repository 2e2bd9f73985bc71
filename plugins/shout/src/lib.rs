//! `shout`: a `reply.transform` hook (a chain) that upper-cases replies ending with `!`.

use airlock_abi::{ActionError, Context, HookReply, Hooks, InitError, Plugin};

/// The plugin.
pub struct Shout;

impl Plugin for Shout {
    fn create(_ctx: Context) -> Result<Self, InitError> {
        Ok(Self)
    }

    fn hooks(hooks: &mut Hooks<Self>) {
        hooks.add("reply.transform", |_: &Self, reply: String| {
            let reply = if reply.trim_end().ends_with('!') {
                reply.to_uppercase()
            } else {
                reply
            };
            Ok::<_, ActionError>(HookReply::Continue(reply))
        });
    }
}

airlock_abi::export_plugin!(Shout);

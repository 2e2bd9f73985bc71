//! `crashy`: panics whenever an input line contains "crash" (in the `input.transform` hook) and
//! in its `boom` action. Each panic is contained and counted; enough of them quarantine it.
//! Lines starting with `crashy:` are swallowed with a reply, to show interception.

use airlock_abi::{ActionError, Actions, Context, HookReply, Hooks, InitError, Plugin};

/// The plugin.
pub struct Crashy;

impl Plugin for Crashy {
    fn create(_ctx: Context) -> Result<Self, InitError> {
        Ok(Self)
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("boom", |_: &Self, (): ()| -> Result<(), ActionError> {
            panic!("crashy: boom, as asked");
        });
    }

    fn hooks(hooks: &mut Hooks<Self>) {
        hooks.add("input.transform", |_: &Self, line: String| {
            if line.contains("crash") && !line.starts_with("crashy:") {
                panic!("crashy: the input mentioned a crash");
            }
            Ok::<_, ActionError>(match line.strip_prefix("crashy:") {
                Some(rest) => {
                    HookReply::Swallow(format!("crashy took {:?} and kept it", rest.trim()))
                }
                None => HookReply::Continue(line),
            })
        });
    }
}

airlock_abi::export_plugin!(Crashy);

//! A plain line: through the console's hook points, `input.transform` (which may answer it
//! itself), a reply, `reply.transform` and `reply.guard`; each failing plugin noted.

use airlock::hooks::{GuardVerdict, HookFailure};

use super::{Console, INPUT_TRANSFORM, REPLY_GUARD, REPLY_TRANSFORM};

impl Console<'_> {
    /// A plain line: through `input.transform`, a reply, `reply.transform` and `reply.guard`.
    pub(super) fn converse(&self, line: &str) -> String {
        let hooks = self.host.hooks();
        let mut notes = Vec::new();
        let input = match hooks.intercept::<String>(INPUT_TRANSFORM, line.to_owned()) {
            Ok(outcome) => {
                notes.extend(
                    outcome
                        .failures
                        .iter()
                        .map(|f| failure_note(INPUT_TRANSFORM, f)),
                );
                if let Some(swallowed) = outcome.swallowed {
                    notes.push(format!("[{}] {}", swallowed.plugin, swallowed.reply));
                    return notes.join("\n");
                }
                outcome.value
            }
            Err(e) => return format!("error: {e}"),
        };
        let reply = match hooks.chain::<String>(REPLY_TRANSFORM, format!("you said: {input}")) {
            Ok(outcome) => {
                notes.extend(
                    outcome
                        .failures
                        .iter()
                        .map(|f| failure_note(REPLY_TRANSFORM, f)),
                );
                outcome.value
            }
            Err(e) => return format!("error: {e}"),
        };
        match hooks.guard(REPLY_GUARD, &reply) {
            Ok(outcome) => {
                notes.extend(
                    outcome
                        .failures
                        .iter()
                        .map(|f| failure_note(REPLY_GUARD, f)),
                );
                notes.push(match outcome.verdict {
                    GuardVerdict::Allowed => reply,
                    GuardVerdict::Blocked { plugin, reason } => {
                        format!("(reply blocked by {plugin}: {reason})")
                    }
                });
            }
            Err(e) => notes.push(format!("error: {e}")),
        }
        notes.join("\n")
    }
}

fn failure_note(hook: &str, failure: &HookFailure) -> String {
    format!(
        "! {} failed in {hook} ({}): {}",
        failure.plugin, failure.code, failure.reason
    )
}

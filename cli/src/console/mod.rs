//! The demo host's line console: list, call and operate plugins (`/help` lists the commands).
//! Kept in the library (not in `main.rs`) so that it is tested like the rest.

mod calls;
mod converse;
mod events;
mod input;
mod operate;
mod pending;

pub(crate) use input::EndableInput;
pub(crate) use operate::applied_text;

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use airlock::hooks::HookMode;
use airlock::Reply;
use airlock::{CancelToken, Host};

/// The console's hook points: every plain line goes through `input.transform` (an intercept
/// chain), the reply through `reply.transform` (a chain) and then `reply.guard` (a guard).
pub const INPUT_TRANSFORM: &str = "input.transform";
/// See [`INPUT_TRANSFORM`].
pub const REPLY_TRANSFORM: &str = "reply.transform";
/// See [`INPUT_TRANSFORM`].
pub const REPLY_GUARD: &str = "reply.guard";

/// What a console line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleOutcome {
    /// Keep reading lines.
    Continue,
    /// `/quit` or end of input.
    Quit,
}

/// A line console over a [`Host`].
#[derive(Debug)]
pub struct Console<'h> {
    host: &'h Host,
    /// The calls running in the background (`/stream`), by number, with their tokens.
    running: Mutex<BTreeMap<u64, CancelToken>>,
    /// The number of the last call started in the background.
    started: AtomicU64,
}

const HELP: &str = "\
commands:
  /plugins                      list loaded plugins: state, generation, grants, counters
  /call PLUGIN ACTION [JSON]    call an action (JSON input defaults to null); what it
                                streams is printed as it arrives (`> ...`)
  /stream PLUGIN ACTION [JSON]  start a call in the background as #N: its stream printed
                                as it arrives (`#N > ...`), then its answer
  /cancel [N]                   cancel background call #N (default: the last one started)
  /publish TOPIC [JSON]         publish an event as the host
  /events                       topics declared and seen, and the last routine runs
  /revoke PLUGIN CAPABILITY     revoke a capability (or every grant of a kind) at run time
  /disable PLUGIN               tear a plugin down and revoke its context
  /enable PLUGIN                create a disabled plugin again
  /config PLUGIN JSON           change a plugin's config (live, or by re-creating it)
  /reload PLUGIN                load the plugin's library again now (a new generation)
  /audit [N]                    the last N audit records (default 10)
  /dispatch KIND [JSON]         send a request to the plugin that claims KIND
  /run-job PLUGIN JOB           run a plugin's timer job (interval or cron) once, now
  /approvals                    the calls waiting for approval (the policy says ask)
  /approve ID                   run a call waiting for approval, and show its answer
  /refuse ID                    drop a call waiting for approval
  /pending                      the answers that wait (an action answered pending): id,
                                plugin.action, caller, description, state
  /pending resolve ID [JSON]    resolve one with JSON (default null) as its answer
  /ACTION [ARGS]                call the first plugin (in load order) that has ACTION;
                                ARGS is JSON, or else passed as a string
  TEXT                          a plain line: input.transform -> reply -> reply.transform -> reply.guard
  /help                         this text
  /quit                         tear the plugins down and exit";

impl<'h> Console<'h> {
    /// A console over `host`; defines the console's hook points on it.
    pub fn new(host: &'h Host) -> Self {
        host.define_hook(INPUT_TRANSFORM, HookMode::Intercept);
        host.define_hook(REPLY_TRANSFORM, HookMode::Chain);
        host.define_hook(REPLY_GUARD, HookMode::Guard);
        Self {
            host,
            running: Mutex::new(BTreeMap::new()),
            started: AtomicU64::new(0),
        }
    }

    /// Reads lines from `input` until `/quit` or end of input, answering on `output`.
    ///
    /// # Errors
    ///
    /// I/O errors of `input` or `output`.
    /// Calls started with `/stream` run on threads of their own meanwhile; their lines go to
    /// `output` as they come. At the end the console cancels those still running and waits for
    /// them.
    pub fn run(&self, input: impl BufRead, output: impl Write + Send) -> io::Result<()> {
        let output = Mutex::new(output);
        let say = |text: &str| -> io::Result<()> {
            let mut output = output
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !text.is_empty() {
                writeln!(output, "{text}")?;
            }
            output.flush()
        };
        say(&format!(
            "airlock console: {} plugin(s) loaded; /help for commands",
            self.host.plugins().len()
        ))?;
        std::thread::scope(|scope| {
            let ran = (|| {
                for line in input.lines() {
                    let line = line?;
                    if let Some(args) = line.trim().strip_prefix("/stream") {
                        let started = self.start(args.trim(), scope, &say);
                        say(&started)?;
                        continue;
                    }
                    if let Some(args) = line.trim().strip_prefix("/call ") {
                        // What the action streams is printed as it arrives.
                        let answer = self.call(args.trim(), &mut |chunk| {
                            let _ = say(&chunk);
                        });
                        say(&answer)?;
                        continue;
                    }
                    let (outcome, text) = self.line(&line);
                    say(&text)?;
                    if outcome == ConsoleOutcome::Quit {
                        break;
                    }
                }
                Ok(())
            })();
            for token in self.running_calls().values() {
                token.cancel();
            }
            ran
        })
    }

    /// Handles one line and returns what to print.
    pub fn line(&self, line: &str) -> (ConsoleOutcome, String) {
        let line = line.trim();
        if line.is_empty() {
            return (ConsoleOutcome::Continue, String::new());
        }
        let Some(command) = line.strip_prefix('/') else {
            return (ConsoleOutcome::Continue, self.converse(line));
        };
        let (name, rest) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let text = match name {
            "quit" | "exit" => return (ConsoleOutcome::Quit, "bye".to_owned()),
            "help" => HELP.to_owned(),
            "plugins" => self.plugins(),
            "call" => {
                let mut streamed = 0u64;
                let answer = self.call(rest.trim(), &mut |_| streamed += 1);
                if streamed > 0 {
                    format!("({streamed} chunks streamed)\n{answer}")
                } else {
                    answer
                }
            }
            "publish" => self.publish(rest.trim()),
            "events" => self.events(),
            "revoke" => self.revoke(rest.trim()),
            "disable" => match self.host.disable(rest.trim()) {
                Ok(record) => {
                    let mut text = format!("{}: disabled ({:?})", record.id, record.outcome);
                    for dependent in &record.dependents {
                        text.push_str(&format!(
                            "\n{}: disabled with it, as it depends on {} ({:?})",
                            dependent.id, record.id, dependent.outcome
                        ));
                    }
                    text
                }
                Err(e) => format!("error: {e}"),
            },
            "enable" => match self.host.enable(rest.trim()) {
                Ok(()) => format!("{}: enabled", rest.trim()),
                Err(e) => format!("error: {e}"),
            },
            "config" => self.config(rest.trim()),
            "reload" => match self.host.reload(rest.trim()) {
                Ok(outcome) => outcome.to_string(),
                Err(e) => format!("error: {e}"),
            },
            "audit" => self.audit(rest.trim()),
            "dispatch" => self.dispatch(rest.trim()),
            "run-job" => match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [plugin, job] => match self.host.run_job(plugin, job) {
                    Ok(run) => format!("{plugin}: job {job} ran by hand (run {run})"),
                    Err(e) => format!("error: {e}"),
                },
                _ => "usage: /run-job PLUGIN JOB".to_owned(),
            },
            "approvals" => self.approvals(),
            "approve" | "refuse" => self.settle(name, rest.trim()),
            "pending" => self.pending(rest),
            "cancel" => self.cancel(rest.trim()),
            other => self.action_command(other, rest.trim()),
        };
        (ConsoleOutcome::Continue, text)
    }
}

/// Parses console JSON; empty text is `null`.
fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| format!("error bad_input: the input is not JSON: {e}"))
}

fn render(result: Result<Reply, airlock::CallError>) -> String {
    match result {
        Ok(Reply::Ok(value)) => format!("ok {value}"),
        Ok(Reply::Error(message)) => format!("error {message}"),
        Ok(Reply::PendingApproval(id)) => format!("pending_approval {id}"),
        Ok(Reply::Pending { id, description }) => format!("pending {id}: {description}"),
        Err(e) => format!("error {}: {}", e.code, e.message),
    }
}

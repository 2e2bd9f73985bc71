//! The demo host's line console: list, call and operate plugins (`/help` lists the commands).
//! Kept in the library (not in `main.rs`) so that it is tested like the rest.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use airlock::hooks::{GuardVerdict, HookFailure, HookMode};
use airlock::{CancelToken, Chunk, Host, Reply};

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

    fn running_calls(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancelToken>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `/stream PLUGIN ACTION [JSON]`: starts the call on a thread of `scope`, printing what it
    /// streams and its answer through `say`; answers what to print now.
    fn start<'s, 'e>(
        &'s self,
        args: &str,
        scope: &'s std::thread::Scope<'s, 'e>,
        say: &'s (dyn Fn(&str) -> io::Result<()> + Sync),
    ) -> String {
        let (plugin, action, input) = match call_args(args) {
            Ok(call) => call,
            Err(usage) => return usage.replace("/call", "/stream"),
        };
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        let token = CancelToken::new();
        self.running_calls().insert(number, token.clone());
        let (host, running) = (self.host, &self.running);
        let started = format!("#{number} started: {plugin}.{action} (/cancel {number} to stop it)");
        scope.spawn(move || {
            let answered = host
                .call(&plugin, &action)
                .cancel_on(&token)
                .on_chunk(|chunk| {
                    let _ = say(&format!("#{number} > {}", chunk_text(&chunk)));
                })
                .json(&input);
            running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&number);
            let _ = say(&format!("#{number} {}", render(answered)));
        });
        started
    }

    /// `/cancel [N]`.
    fn cancel(&self, args: &str) -> String {
        let running = self.running_calls();
        let number = if args.is_empty() {
            running.keys().next_back().copied()
        } else {
            args.trim_start_matches('#').parse().ok()
        };
        match number.and_then(|n| running.get(&n).map(|token| (n, token))) {
            Some((n, token)) => {
                token.cancel();
                format!("#{n} cancelling")
            }
            None if args.is_empty() => "no call is running in the background".to_owned(),
            None => format!("no background call {args} is running"),
        }
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
            "revoke" => self.revoke(rest.trim()),
            "disable" => match self.host.disable(rest.trim()) {
                Ok(record) => format!("{}: disabled ({:?})", record.id, record.outcome),
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
            "cancel" => self.cancel(rest.trim()),
            other => self.action_command(other, rest.trim()),
        };
        (ConsoleOutcome::Continue, text)
    }

    fn plugins(&self) -> String {
        let plugins = self.host.plugins();
        if plugins.is_empty() {
            return "no plugins loaded".to_owned();
        }
        let (retained, bytes) = airlock::plugins::retained();
        let footer = format!(
            "retained libraries in this process: {retained} ({:.1} MB; libraries are never unloaded)",
            bytes as f64 / 1e6
        );
        plugins
            .iter()
            .map(|p| {
                let actions: Vec<_> = p.actions.iter().map(|a| a.name.as_str()).collect();
                let s = &p.stats;
                let health = match &p.health {
                    None => "health not yet polled".to_owned(),
                    Some(airlock_abi::Health::Ok) => "health ok".to_owned(),
                    Some(airlock_abi::Health::Degraded(d)) => format!("health degraded: {d}"),
                    Some(airlock_abi::Health::Error(e)) => format!("health error: {e}"),
                };
                let hooks: Vec<_> = p.hooks.iter().map(|h| h.name.as_str()).collect();
                format!(
                    "{} {} [{}, generation {}, {:?}, {}, {}, {health}] actions: {}; hooks: {}; grants: {}; calls {}, faults {}, host calls {}, denials {}, events {}, timer runs {}, subscriptions {}, timers {}",
                    p.id,
                    p.version,
                    p.state,
                    p.generation,
                    p.concurrency,
                    match p.isolation {
                        airlock::policy::Isolation::Process => "in a worker process",
                        airlock::policy::Isolation::InProcess => "in-process",
                    },
                    p.signature,
                    if actions.is_empty() {
                        "-".to_owned()
                    } else {
                        actions.join(", ")
                    },
                    if hooks.is_empty() {
                        "-".to_owned()
                    } else {
                        hooks.join(", ")
                    },
                    if p.grants.is_empty() {
                        "-".to_owned()
                    } else {
                        p.grants.join(", ")
                    },
                    s.calls,
                    s.faults,
                    s.host_calls,
                    s.denials,
                    s.events,
                    s.timer_runs,
                    s.subscriptions,
                    s.timers,
                )
            })
            .chain(std::iter::once(footer))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A plain line: through `input.transform`, a reply, `reply.transform` and `reply.guard`.
    fn converse(&self, line: &str) -> String {
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

    /// `/name args`: the first plugin in load order with an action `name`.
    fn action_command(&self, name: &str, args: &str) -> String {
        let Some(plugin) = self
            .host
            .plugins()
            .into_iter()
            .find(|p| p.actions.iter().any(|a| a.name == name))
        else {
            return format!(
                "unknown command /{name}; /help lists the commands, /plugins the actions"
            );
        };
        let input = if args.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(args)
                .unwrap_or_else(|_| serde_json::Value::String(args.to_owned()))
        };
        render(self.host.call(&plugin.id, name).json(&input))
    }

    fn publish(&self, args: &str) -> String {
        let (topic, json) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        if topic.is_empty() {
            return "usage: /publish TOPIC [JSON]".to_owned();
        }
        let payload = match parse_json(json) {
            Ok(value) => value,
            Err(e) => return e,
        };
        format!(
            "queued for {} subscription(s)",
            self.host.publish(topic, &payload)
        )
    }

    fn revoke(&self, args: &str) -> String {
        let mut parts = args.split_whitespace();
        let (Some(plugin), Some(capability), None) = (parts.next(), parts.next(), parts.next())
        else {
            return "usage: /revoke PLUGIN CAPABILITY".to_owned();
        };
        match self.host.revoke_capability(plugin, capability) {
            Ok(removed) if removed.is_empty() => {
                format!("{plugin} had no grant matching {capability}")
            }
            Ok(removed) => format!("{plugin}: revoked {}", removed.join(", ")),
            Err(e) => format!("error: {e}"),
        }
    }

    fn config(&self, args: &str) -> String {
        let (plugin, json) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        if plugin.is_empty() || json.trim().is_empty() {
            return "usage: /config PLUGIN JSON".to_owned();
        }
        let config = match parse_json(json) {
            Ok(value) => value,
            Err(e) => return e,
        };
        match self.host.set_config(plugin, config) {
            Ok(applied) => {
                let how = if applied.live {
                    "applied live"
                } else {
                    "re-created with it"
                };
                let warnings = if applied.warnings.is_empty() {
                    String::new()
                } else {
                    format!(" (warnings: {})", applied.warnings.join("; "))
                };
                format!("{plugin}: config {how}{warnings}")
            }
            Err(e) => format!("error: {e}"),
        }
    }

    fn audit(&self, args: &str) -> String {
        let n = args.parse().unwrap_or(10);
        let records = self.host.audit().tail(n);
        if records.is_empty() {
            return "no audit records".to_owned();
        }
        records
            .iter()
            .map(|r| {
                format!(
                    "#{} {} {} gen {} {:?} {}: {}",
                    r.seq, r.time, r.plugin, r.generation, r.outcome, r.capability, r.detail
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn dispatch(&self, args: &str) -> String {
        let (kind, json) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        if kind.is_empty() {
            return "usage: /dispatch KIND [JSON]".to_owned();
        }
        let input = match parse_json(json) {
            Ok(input) => input,
            Err(e) => return e,
        };
        match self.host.dispatch(kind).json(&input) {
            Ok(done) => format!(
                "{} handled it ({} attempt{}): {}",
                done.holder,
                done.attempts,
                if done.attempts == 1 { "" } else { "s" },
                render(Ok(done.reply))
            ),
            Err(e) => render(Err(e)),
        }
    }

    fn approvals(&self) -> String {
        let pending = self.host.pending_approvals();
        if pending.is_empty() {
            return "no call waits for approval".to_owned();
        }
        pending
            .iter()
            .map(|r| {
                format!(
                    "{} {}.{} for {}: {}",
                    r.id.0,
                    r.plugin,
                    r.name,
                    r.caller,
                    String::from_utf8_lossy(&r.input)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn settle(&self, verb: &str, id: &str) -> String {
        let Ok(id) = id.trim_start_matches('#').parse::<u64>() else {
            return format!("usage: /{verb} ID (a number from /approvals)");
        };
        let id = airlock::approvals::ApprovalId(id);
        if verb == "approve" {
            return render(self.host.approve(id));
        }
        if self.host.refuse_approval(id, "refused at the console") {
            format!("{id} refused")
        } else {
            format!("no call waits for approval {id}")
        }
    }

    /// `/call PLUGIN ACTION [JSON]`: hands what the action streams to `on_chunk` (a line each,
    /// as it arrives); answers the answer.
    fn call(&self, args: &str, on_chunk: &mut dyn FnMut(String)) -> String {
        let (plugin, action, input) = match call_args(args) {
            Ok(call) => call,
            Err(usage) => return usage,
        };
        let answered = self
            .host
            .call(&plugin, &action)
            .cancel_on(&CancelToken::new())
            .on_chunk(|chunk| {
                on_chunk(format!("> {}", chunk_text(&chunk)));
            })
            .json(&input);
        render(answered)
    }
}

/// `PLUGIN ACTION [JSON]`.
fn call_args(args: &str) -> Result<(String, String, serde_json::Value), String> {
    let mut parts = args.splitn(3, char::is_whitespace);
    let (Some(plugin), Some(action)) = (parts.next().filter(|s| !s.is_empty()), parts.next())
    else {
        return Err("usage: /call PLUGIN ACTION [JSON]".to_owned());
    };
    let input = parse_json(parts.next().unwrap_or_default())?;
    Ok((plugin.to_owned(), action.to_owned(), input))
}

/// A chunk as one line: JSON as it is, bytes as text.
fn chunk_text(chunk: &Chunk) -> String {
    match chunk {
        Chunk::Json(value) => value.to_string(),
        Chunk::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
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
        Err(e) => format!("error {}: {}", e.code, e.message),
    }
}

fn failure_note(hook: &str, failure: &HookFailure) -> String {
    format!(
        "! {} failed in {hook} ({}): {}",
        failure.plugin, failure.code, failure.reason
    )
}

//! Calls from the console: `/call` (what the action streams printed as it arrives), `/stream`
//! (the call in the background as `#N`), `/cancel`, and `/ACTION`, the first plugin that has
//! the action.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::Ordering;

use airlock::{CancelToken, Chunk};

use super::{parse_json, render, Console};

impl Console<'_> {
    pub(super) fn running_calls(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancelToken>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `/stream PLUGIN ACTION [JSON]`: starts the call on a thread of `scope`, printing what it
    /// streams and its answer through `say`; answers what to print now.
    pub(super) fn start<'s, 'e>(
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
    pub(super) fn cancel(&self, args: &str) -> String {
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

    /// `/name args`: the first plugin in load order with an action `name`.
    pub(super) fn action_command(&self, name: &str, args: &str) -> String {
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

    /// `/call PLUGIN ACTION [JSON]`: hands what the action streams to `on_chunk` (a line each,
    /// as it arrives); answers the answer.
    pub(super) fn call(&self, args: &str, on_chunk: &mut dyn FnMut(String)) -> String {
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

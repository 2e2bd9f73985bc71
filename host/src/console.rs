//! The demo host's line console: `/plugins`, `/call PLUGIN ACTION [JSON]`, `/help`, `/quit`.
//! Kept in the library (not in `main.rs`) so that it is tested like the rest.

use std::io::{self, BufRead, Write};

use crate::host::{ActionOutcome, Host};

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
}

const HELP: &str = "\
commands:
  /plugins                      list loaded plugins with their state and actions
  /call PLUGIN ACTION [JSON]    call an action (JSON input defaults to null)
  /help                         this text
  /quit                         tear the plugins down and exit";

impl<'h> Console<'h> {
    /// A console over `host`.
    pub fn new(host: &'h Host) -> Self {
        Self { host }
    }

    /// Reads lines from `input` until `/quit` or end of input, answering on `output`.
    ///
    /// # Errors
    ///
    /// I/O errors of `input` or `output`.
    pub fn run(&mut self, input: impl BufRead, mut output: impl Write) -> io::Result<()> {
        writeln!(
            output,
            "airlock console: {} plugin(s) loaded; /help for commands",
            self.host.plugins().len()
        )?;
        for line in input.lines() {
            let line = line?;
            let (outcome, text) = self.line(&line);
            if !text.is_empty() {
                writeln!(output, "{text}")?;
            }
            output.flush()?;
            if outcome == ConsoleOutcome::Quit {
                break;
            }
        }
        Ok(())
    }

    /// Handles one line and returns what to print.
    pub fn line(&mut self, line: &str) -> (ConsoleOutcome, String) {
        let line = line.trim();
        if line.is_empty() {
            return (ConsoleOutcome::Continue, String::new());
        }
        let Some(command) = line.strip_prefix('/') else {
            return (
                ConsoleOutcome::Continue,
                "plain lines are not routed anywhere yet; try /call or /help".to_owned(),
            );
        };
        let (name, rest) = command
            .split_once(char::is_whitespace)
            .unwrap_or((command, ""));
        let text = match name {
            "quit" | "exit" => return (ConsoleOutcome::Quit, "bye".to_owned()),
            "help" => HELP.to_owned(),
            "plugins" => self.plugins(),
            "call" => self.call(rest.trim()),
            other => format!("unknown command /{other}; /help lists the commands"),
        };
        (ConsoleOutcome::Continue, text)
    }

    fn plugins(&self) -> String {
        let plugins = self.host.plugins();
        if plugins.is_empty() {
            return "no plugins loaded".to_owned();
        }
        plugins
            .iter()
            .map(|p| {
                let actions: Vec<_> = p.actions.iter().map(|a| a.name.as_str()).collect();
                format!(
                    "{} {} [{:?}, generation {}, {:?}] actions: {}{}",
                    p.id,
                    p.version,
                    p.state,
                    p.generation,
                    p.concurrency,
                    if actions.is_empty() {
                        "-".to_owned()
                    } else {
                        actions.join(", ")
                    },
                    if p.grants.is_empty() {
                        String::new()
                    } else {
                        format!("; grants: {}", p.grants.join(", "))
                    },
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn call(&self, args: &str) -> String {
        let mut parts = args.splitn(3, char::is_whitespace);
        let (Some(plugin), Some(action)) = (parts.next().filter(|s| !s.is_empty()), parts.next())
        else {
            return "usage: /call PLUGIN ACTION [JSON]".to_owned();
        };
        let input = match parts.next().map(str::trim).filter(|s| !s.is_empty()) {
            None => serde_json::Value::Null,
            Some(text) => match serde_json::from_str(text) {
                Ok(value) => value,
                Err(e) => return format!("error bad_input: the input is not JSON: {e}"),
            },
        };
        match self.host.call(plugin, action, &input) {
            Ok(ActionOutcome::Ok(value)) => format!("ok {value}"),
            Ok(ActionOutcome::Error(message)) => format!("error {message}"),
            Err(e) => format!("error {}: {}", e.code, e.message),
        }
    }
}

//! Structured log lines from plugins (`log write`): the message and the plugin's fields become
//! one `tracing` event on the plugin's span, each field a `tracing` field of its own — so a
//! host using `tracing-subscriber`'s JSON output gets `{"order":42,"express":true}` as JSON,
//! and a filter sees the event like any other of target `airlock::plugin`.
//!
//! `tracing` wants field names known at a call site; a plugin's are known when it logs. So
//! each distinct set of names (per level) gets a call site made once, registered with
//! `tracing` like a static one, and kept: at most [`MAX_SITES`] of them, after which further
//! sets are logged with their fields as one JSON field, `fields`.

use std::collections::HashMap;
use std::sync::OnceLock;

use airlock_abi::abi::{HostError, LogLevel};
use airlock_abi::wire::{LogLine, Request, MAX_LOG_FIELDS};
use parking_lot::Mutex;
use serde_json::Value as Json;
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};

use super::bad_request;
use super::row::{row, Grant};
use crate::services::printable::printable;
use crate::services::registry::{BuiltIn, Requester};
use crate::services::Observed;

/// One row per operation: a log line needs no capability.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![row(Request::LogWrite, Grant::Free, write)]
}

/// `log write`: the line, shown to the test harness when it observes the plugin, and emitted
/// in the plugin's span.
fn write(r: &dyn Requester, line: LogLine) -> Result<(), HostError> {
    let line = check(line)?;
    if r.observed() {
        let fields: Vec<String> = line
            .fields
            .iter()
            .map(|(n, v)| format!(" {n}={v}"))
            .collect();
        r.host().observe(
            r.plugin(),
            Observed::Log {
                level: LogLevel(line.level),
                message: format!("{}{}", line.message, fields.concat()),
            },
        );
    }
    let _span = r.span().enter();
    emit(&line);
    Ok(())
}

/// The most call sites made for plugins' field sets.
pub(crate) const MAX_SITES: usize = 256;

/// A call site made at run time for one level and set of field names.
struct Site {
    metadata: OnceLock<Metadata<'static>>,
}

impl Callsite for Site {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        // Set before the site is registered or used (`site`).
        self.metadata
            .get()
            .unwrap_or_else(|| unreachable!("a site is used once made"))
    }
}

type Key = (u8, Vec<String>);

fn sites() -> &'static Mutex<HashMap<Key, &'static Metadata<'static>>> {
    static SITES: OnceLock<Mutex<HashMap<Key, &'static Metadata<'static>>>> = OnceLock::new();
    SITES.get_or_init(Mutex::default)
}

fn level_of(level: u8) -> Level {
    match LogLevel(level) {
        LogLevel::ERROR => Level::ERROR,
        LogLevel::WARN => Level::WARN,
        LogLevel::INFO => Level::INFO,
        LogLevel::DEBUG => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// The call site for `level` and `names` (`message` first), made and registered the first
/// time; `None` once [`MAX_SITES`] are made.
fn site(level: u8, names: &[&str]) -> Option<&'static Metadata<'static>> {
    // Keyed by the level tracing sees: levels past TRACE are TRACE, not sites of their own.
    let level = match level_of(level) {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        _ => 5,
    };
    let key = (level, names.iter().map(|n| (*n).to_owned()).collect());
    let mut sites = sites().lock();
    if let Some(metadata) = sites.get(&key) {
        return Some(metadata);
    }
    if sites.len() >= MAX_SITES {
        return None;
    }
    // Made once per distinct set and kept for the life of the process, as static sites are.
    let site: &'static Site = Box::leak(Box::new(Site {
        metadata: OnceLock::new(),
    }));
    let names: &'static [&'static str] = Box::leak(
        names
            .iter()
            .map(|n| &*Box::leak((*n).to_owned().into_boxed_str()))
            .collect::<Vec<&'static str>>()
            .into_boxed_slice(),
    );
    let metadata = Metadata::new(
        "plugin log line",
        "airlock::plugin",
        level_of(level),
        None,
        None,
        None,
        FieldSet::new(names, Identifier(site)),
        Kind::EVENT,
    );
    let metadata = site.metadata.get_or_init(|| metadata);
    tracing::callsite::register(site);
    sites.insert(key, metadata);
    Some(metadata)
}

/// A field's value as `tracing` records it: numbers, booleans and strings as themselves,
/// anything else as its JSON text.
enum Recorded {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Text(String),
}

impl Recorded {
    fn of(value: &Json) -> Self {
        match value {
            Json::Bool(b) => Self::Bool(*b),
            Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Self::U64(u),
                (None, Some(i), _) => Self::I64(i),
                (_, _, f) => Self::F64(f.unwrap_or(f64::NAN)),
            },
            Json::String(s) => Self::Text(printable(s).into_owned()),
            other => Self::Text(other.to_string()),
        }
    }

    fn as_value(&self) -> &dyn Value {
        match self {
            Self::Bool(b) => b,
            Self::I64(i) => i,
            Self::U64(u) => u,
            Self::F64(f) => f,
            Self::Text(s) => s,
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "message"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Checks a `log write` request's line.
fn check(line: LogLine) -> Result<LogLine, HostError> {
    if line.fields.len() > MAX_LOG_FIELDS {
        return Err(bad_request(format!(
            "{} fields in one log line; at most {MAX_LOG_FIELDS} are allowed",
            line.fields.len()
        )));
    }
    if let Some((name, _)) = line.fields.iter().find(|(n, _)| !valid_name(n)) {
        return Err(bad_request(format!(
            "log field {name:?}: a name is 1-64 of a-z A-Z 0-9 _ . and not \"message\""
        )));
    }
    Ok(line)
}

/// Emits `line` as one `tracing` event in the current span: its message and text fields
/// escaped ([`printable`]), so that it is one line in the operator's log.
fn emit(line: &LogLine) {
    let mut names: Vec<&str> = vec!["message"];
    names.extend(line.fields.iter().map(|(n, _)| n.as_str()));
    names[1..].sort_unstable();
    names.dedup();
    let message = printable(&line.message);
    let Some(metadata) = site(line.level, &names) else {
        let fields: serde_json::Map<String, Json> = line.fields.iter().cloned().collect();
        let fields = Json::Object(fields).to_string();
        match level_of(line.level) {
            Level::ERROR => tracing::error!(target: "airlock::plugin", fields, "{message}"),
            Level::WARN => tracing::warn!(target: "airlock::plugin", fields, "{message}"),
            Level::INFO => tracing::info!(target: "airlock::plugin", fields, "{message}"),
            Level::DEBUG => tracing::debug!(target: "airlock::plugin", fields, "{message}"),
            _ => tracing::trace!(target: "airlock::plugin", fields, "{message}"),
        }
        return;
    };
    if !tracing::dispatcher::get_default(|d| d.enabled(metadata)) {
        return;
    }
    let set = metadata.fields();
    let fields: Vec<Field> = names.iter().filter_map(|n| set.field(n)).collect();
    let message = Recorded::Text(message.into_owned());
    // A later field of the same name wins, as in a JSON object.
    let values: Vec<Recorded> = fields[1..]
        .iter()
        .map(|field| {
            let value = line.fields.iter().rev().find(|(n, _)| n == field.name());
            value.map_or(Recorded::Text(String::new()), |(_, v)| Recorded::of(v))
        })
        .collect();
    let mut pairs: [(&Field, Option<&dyn Value>); MAX_LOG_FIELDS + 1] =
        [(&fields[0], None); MAX_LOG_FIELDS + 1];
    pairs[0] = (&fields[0], Some(message.as_value()));
    for (i, (field, value)) in fields[1..].iter().zip(&values).enumerate() {
        pairs[i + 1] = (field, Some(value.as_value()));
    }
    tracing::Event::dispatch(metadata, &set.value_set(&pairs));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membrane::row::Input;
    use std::io::Write;
    use std::sync::Arc;

    /// A `log write` payload, read and checked as the router and the row do.
    fn parse(payload: &[u8]) -> Result<LogLine, HostError> {
        check(LogLine::decode(payload)?)
    }

    /// Captures what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn fields_arrive_as_json_fields_of_one_event_in_the_plugins_span() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("plugin", plugin = "shop");
            let _entered = span.enter();
            let line = parse(
                br#"{"level":3,"message":"order shipped","fields":[["order",42],["express",true],["to","Ada"],["items",[1,2]],["price",9.5],["delta",-3]]}"#,
            )
            .expect("valid");
            emit(&line);
            // The same names again (another site is not made), and a level filtered out.
            emit(&line);
            emit(&LogLine {
                level: 5,
                message: "too fine".to_owned(),
                fields: Vec::new(),
            });
        });
        let out = String::from_utf8(captured.0.lock().clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 2, "{out}");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["message"], "order shipped");
        assert_eq!(fields["order"], 42);
        assert_eq!(fields["express"], true);
        assert_eq!(fields["to"], "Ada");
        assert_eq!(fields["items"], "[1,2]");
        assert_eq!(fields["price"], 9.5);
        assert_eq!(fields["delta"], -3);
        assert_eq!(lines[0]["target"], "airlock::plugin");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["span"]["plugin"], "shop");
    }

    #[test]
    fn a_plugin_cannot_forge_a_line_of_the_operators_log() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            emit(&LogLine {
                level: 3,
                message: "a\nFORGED line\r\n2026-01-01T00:00:00Z  WARN airlock: forged".to_owned(),
                fields: vec![("note".to_owned(), Json::from("b\nFORGED field"))],
            });
        });
        let out = String::from_utf8(captured.0.lock().clone()).expect("utf-8");
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("a\\nFORGED line\\r\\n2026"), "{out}");
        assert!(!out.lines().any(|l| l.starts_with("FORGED")), "{out}");
    }

    #[test]
    fn bad_names_and_too_many_fields_are_refused() {
        for bad in [
            r#"{"level":3,"message":"m","fields":[["message",1]]}"#,
            r#"{"level":3,"message":"m","fields":[["a b",1]]}"#,
            r#"{"level":3,"message":"m","fields":[["",1]]}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let many: Vec<(String, Json)> = (0..=MAX_LOG_FIELDS)
            .map(|i| (format!("f{i}"), Json::from(i)))
            .collect();
        let line = serde_json::to_vec(&LogLine {
            level: 3,
            message: "m".to_owned(),
            fields: many,
        })
        .expect("json");
        assert!(parse(&line).is_err());
    }
}

//! Call spans, recorded by a subscriber of the test's own: a plugin calling another makes a
//! tree (the callee's `airlock.call` a child of the caller's, with plugin, action, caller and
//! outcome), also when the caller is an isolated plugin whose worker asks the host for the call
//! (the request's span between the two), and a failing call's outcome is its failure's code.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One span as the test layer saw it: its name, its parent's index, its fields.
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    parent: Option<usize>,
    fields: BTreeMap<String, String>,
}

/// Records every span with its parent and fields, including those recorded after it began.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

/// The index of a span in what was recorded, kept in the span's extensions.
struct Index(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span is in the registry");
        let parent = span
            .parent()
            .and_then(|p| p.extensions().get::<Index>().map(|i| i.0));
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut seen = self.0.lock().expect("spans");
        seen.push(Seen {
            name: attrs.metadata().name(),
            parent,
            fields,
        });
        span.extensions_mut().insert(Index(seen.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is in the registry");
        let index = span.extensions().get::<Index>().map(|i| i.0);
        if let Some(i) = index {
            values.record(&mut Fields(&mut self.0.lock().expect("spans")[i].fields));
        }
    }
}

impl Spans {
    /// Runs `f` with this layer as the thread's subscriber, interested in everything.
    fn on_this_thread<R>(&self, f: impl FnOnce() -> R) -> R {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::with_default(subscriber, f)
    }

    fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("spans").clone()
    }
}

/// The index of the one `airlock.call` span of `plugin` (there must be exactly one).
fn call_of(spans: &[Seen], plugin: &str) -> usize {
    let found: Vec<usize> = (0..spans.len())
        .filter(|&i| spans[i].name == "airlock.call" && field(&spans[i], "plugin") == plugin)
        .collect();
    assert_eq!(found.len(), 1, "one call span of {plugin}: {spans:#?}");
    found[0]
}

fn field<'a>(span: &'a Seen, name: &str) -> &'a str {
    span.fields.get(name).map_or("", String::as_str)
}

/// The two parallel relays, each told its own id; `relay-b` with `extra` in its policy.
fn relays(extra: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["relay-b", "relay-c", "panicker"]);
    let mut policy = String::from("[plugins.panicker.config]\npanic_in = \"action\"\n");
    for id in ["relay-b", "relay-c"] {
        let more = if id == "relay-b" { extra } else { "" };
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n{more}\n\
             [plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    (dir, host)
}

/// Asserts the span at `i` is the call of `plugin.bounce` by `caller`, ended `outcome`, with a
/// duration.
fn assert_call(spans: &[Seen], i: usize, plugin: &str, caller: &str, outcome: &str) {
    let span = &spans[i];
    assert_eq!(field(span, "action"), "bounce", "{span:?}");
    assert_eq!(field(span, "kind"), "action", "{span:?}");
    assert_eq!(field(span, "caller"), caller, "{span:?}");
    assert_eq!(field(span, "outcome"), outcome, "{span:?}");
    assert!(
        field(span, "duration_ns").parse::<u64>().is_ok(),
        "a duration was recorded: {span:?}"
    );
    assert_eq!(field(span, "plugin"), plugin);
}

#[test]
fn a_plugin_calling_another_makes_a_tree_of_call_spans() {
    let (_dir, host) = relays("");
    let spans = Spans::default();
    let reply = spans.on_this_thread(|| {
        host.call("relay-b", "bounce")
            .as_principal(&airlock::Principal::new("alice", &[]))
            .json(&json!({ "to": "relay-c", "times": 1 }))
    });
    assert_eq!(reply.expect("call"), Reply::Ok(json!(1)));
    let seen = spans.all();
    let (outer, inner) = (call_of(&seen, "relay-b"), call_of(&seen, "relay-c"));
    assert_eq!(
        seen[outer].parent, None,
        "the outer call is a root: {seen:#?}"
    );
    assert_eq!(
        seen[inner].parent,
        Some(outer),
        "B's call nests in A's: {seen:#?}"
    );
    assert_call(&seen, outer, "relay-b", "host:alice", "ok");
    assert_call(&seen, inner, "relay-c", "plugin:relay-b", "ok");
}

#[test]
fn an_isolated_plugins_call_to_another_nests_under_its_call_through_its_request() {
    let (_dir, host) = relays("isolation = \"process\"");
    let spans = Spans::default();
    let reply = spans.on_this_thread(|| {
        host.call("relay-b", "bounce")
            .json(&json!({ "to": "relay-c", "times": 1 }))
    });
    assert_eq!(reply.expect("call"), Reply::Ok(json!(1)));
    let seen = spans.all();
    let (outer, inner) = (call_of(&seen, "relay-b"), call_of(&seen, "relay-c"));
    assert_call(&seen, outer, "relay-b", "host", "ok");
    assert_call(&seen, inner, "relay-c", "plugin:relay-b", "ok");
    // The worker asked the host for the call: that request is the callee's parent, and the
    // isolated call's child.
    let request = seen[inner].parent.expect("the inner call has a parent");
    assert_eq!(seen[request].name, "airlock.request", "{seen:#?}");
    assert_eq!(field(&seen[request], "service"), "plugins", "{seen:#?}");
    assert_eq!(field(&seen[request], "operation"), "call", "{seen:#?}");
    assert_eq!(seen[request].parent, Some(outer), "{seen:#?}");
}

#[test]
fn a_failing_call_records_its_failure_code_as_its_outcome() {
    let (_dir, host) = relays("");
    let spans = Spans::default();
    let (bad, panicked, own_error) = spans.on_this_thread(|| {
        (
            // Not the input `bounce` takes: refused by the plugin's own decoding.
            host.call("relay-b", "bounce")
                .json(&json!({ "times": "x" })),
            host.call("panicker", "ping").json(&json!(null)),
            // The inner call is refused (no such plugin): the relay answers its own error.
            host.call("relay-b", "bounce")
                .json(&json!({ "to": "relay-none", "times": 1 })),
        )
    });
    assert_eq!(
        bad.expect_err("bad input").code,
        airlock::CallErrorCode::BadInput
    );
    assert_eq!(
        panicked.expect_err("panicked").code,
        airlock::CallErrorCode::Panicked
    );
    assert!(matches!(own_error, Ok(Reply::Error(_))), "{own_error:?}");
    let seen = spans.all();
    let outcomes: Vec<(&str, &str)> = seen
        .iter()
        .filter(|s| s.name == "airlock.call")
        .map(|s| (field(s, "plugin"), field(s, "outcome")))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("relay-b", "bad_input"),
            ("panicker", "panicked"),
            ("relay-b", "error")
        ],
        "{seen:#?}"
    );
}

#[test]
fn airlock_run_with_trace_prints_the_tree_of_a_nested_call_on_stderr() {
    let dir = TempPluginDir::with(&["relay-b", "relay-c"]);
    let policy = dir.path().join("policy.toml");
    let mut text = String::new();
    for id in ["relay-b", "relay-c"] {
        text.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:relay-*\"]\n\
             [plugins.{id}.config]\nid = \"{id}\"\n"
        ));
    }
    std::fs::write(&policy, text).expect("policy");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
    cmd.args(["run", "--trace", "--policy"])
        .arg(&policy)
        .arg(dir.path())
        .env_remove("AIRLOCK_LOG");
    let out = airlock_tests::run_with_input(
        cmd,
        "/call relay-b bounce {\"to\":\"relay-c\",\"times\":1}\n/quit\n",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok 1"), "{stdout}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("trace: "))
        .collect();
    let outer = lines
        .iter()
        .position(|l| {
            l.starts_with("trace: airlock.call plugin=relay-b ") && l.contains(" action=bounce ")
        })
        .unwrap_or_else(|| panic!("no root call of relay-b in:\n{stderr}"));
    let inner = lines
        .get(outer + 1)
        .unwrap_or_else(|| panic!("nothing nested in:\n{stderr}"));
    assert!(
        inner.starts_with("trace:   airlock.call plugin=relay-c "),
        "{stderr}"
    );
    for (line, caller) in [
        (lines[outer], "caller=host"),
        (*inner, "caller=plugin:relay-b"),
    ] {
        for field in ["action=bounce", caller, "outcome=ok", "duration_ns="] {
            assert!(line.contains(field), "{field} missing in {line:?}");
        }
    }
}

//! A `tracing` layer of the tests' own that records every span with its parent and its fields,
//! including those recorded after the span began (shared by `traces.rs` and the
//! `trace_threads` test binary).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// One span as the test layer saw it: its name, its parent's index, its fields.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// The span's name.
    pub(crate) name: &'static str,
    /// The index of its parent among the recorded spans.
    pub(crate) parent: Option<usize>,
    /// Its fields, as text.
    pub(crate) fields: BTreeMap<String, String>,
}

/// Records every span with its parent and fields, including those recorded after it began.
#[derive(Clone, Default)]
pub(crate) struct Spans(Arc<Mutex<Vec<Seen>>>);

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
    /// A subscriber of this layer alone, interested in everything.
    pub(crate) fn subscriber(&self) -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(self.clone())
    }

    /// Every span recorded so far, in the order they began.
    pub(crate) fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("spans").clone()
    }
}

/// The index of the one `airlock.call` span of `plugin.action` (there must be exactly one).
pub(crate) fn call_of(spans: &[Seen], plugin: &str, action: &str) -> usize {
    let found: Vec<usize> = (0..spans.len())
        .filter(|&i| {
            spans[i].name == "airlock.call"
                && field(&spans[i], "plugin") == plugin
                && field(&spans[i], "action") == action
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one call span of {plugin}.{action}: {spans:#?}"
    );
    found[0]
}

/// A field of a span as it was recorded (`""` if it was not).
pub(crate) fn field<'a>(span: &'a Seen, name: &str) -> &'a str {
    span.fields.get(name).map_or("", String::as_str)
}

//! `airlock run --trace`: the host's call spans (`airlock.call`, target `airlock::call`) printed
//! on standard error as a tree, once the outermost call has ended — each span on a line with its
//! fields (the outcome and duration included), the calls it made indented beneath it.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The target whose spans the tree shows.
pub(crate) use airlock::call::TRACE_TARGET as TARGET;

/// Hands each tree of call spans to its printer when its root closes.
pub(crate) struct CallTree {
    print: Box<dyn Fn(&str) + Send + Sync>,
}

impl CallTree {
    /// Trees handed to `print`, one text of lines each.
    pub(crate) fn new(print: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            print: Box::new(print),
        }
    }

    /// Trees written to standard error, each line starting `trace: `.
    pub(crate) fn stderr() -> Self {
        Self::new(|tree| {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "trace: {}", tree.replace('\n', "\ntrace: "));
        })
    }
}

/// A span's line so far, and the finished trees of the spans it holds.
#[derive(Default)]
struct Node {
    fields: String,
    children: Vec<String>,
    /// Children past [`MAX_CHILDREN`], counted rather than kept.
    omitted: usize,
}

/// The nested calls a call's tree keeps: a call that makes calls in a loop for as long as it
/// runs would otherwise hold the text of every one of them until it ends.
const MAX_CHILDREN: usize = 64;

/// Writes fields as ` name=value`, strings quoted only when they hold a space or are empty.
struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if value.is_empty() || value.contains(char::is_whitespace) {
            let _ = write!(self.0, " {}={value:?}", field.name());
        } else {
            let _ = write!(self.0, " {}={}", field.name(), value.escape_debug());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CallTree {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut node = Node::default();
            attrs.record(&mut Fields(&mut node.fields));
            span.extensions_mut().insert(node);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(node) = span.extensions_mut().get_mut::<Node>() {
                values.record(&mut Fields(&mut node.fields));
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(node) = span.extensions_mut().remove::<Node>() else {
            return;
        };
        let mut tree = format!("{}{}", span.name(), node.fields);
        for child in &node.children {
            for line in child.lines() {
                tree.push_str("\n  ");
                tree.push_str(line);
            }
        }
        if node.omitted > 0 {
            let _ = write!(tree, "\n  … {} more calls", node.omitted);
        }
        // Nested in a span the tree shows: printed with it.
        if let Some(parent) = span.parent() {
            if let Some(outer) = parent.extensions_mut().get_mut::<Node>() {
                if outer.children.len() < MAX_CHILDREN {
                    outer.children.push(tree);
                } else {
                    outer.omitted += 1;
                }
                return;
            }
        }
        (self.print)(&tree);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn a_tree_is_printed_once_its_root_closes_with_the_fields_recorded_late() {
        let printed = Arc::new(Mutex::new(Vec::<String>::new()));
        let into = printed.clone();
        let tree = CallTree::new(move |text| into.lock().expect("printed").push(text.to_owned()));
        let subscriber = tracing_subscriber::registry().with(tree);
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::debug_span!(
                target: TARGET,
                "airlock.call",
                plugin = "a",
                outcome = tracing::field::Empty
            );
            outer.in_scope(|| {
                let inner = tracing::debug_span!(target: TARGET, "airlock.call", plugin = "b");
                inner.record("plugin", "b b");
            });
            assert!(
                printed.lock().expect("printed").is_empty(),
                "a nested span waits for its root"
            );
            outer.record("outcome", "ok");
        });
        let printed = printed.lock().expect("printed");
        assert_eq!(
            printed.as_slice(),
            ["airlock.call plugin=a outcome=ok\n  airlock.call plugin=b plugin=\"b b\""]
        );
    }

    #[test]
    fn a_call_making_calls_in_a_loop_keeps_a_bounded_tree() {
        let printed = Arc::new(Mutex::new(Vec::<String>::new()));
        let into = printed.clone();
        let tree = CallTree::new(move |text| into.lock().expect("printed").push(text.to_owned()));
        let subscriber = tracing_subscriber::registry().with(tree);
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::debug_span!(target: TARGET, "airlock.call", plugin = "a");
            outer.in_scope(|| {
                for _ in 0..MAX_CHILDREN + 10 {
                    drop(tracing::debug_span!(target: TARGET, "airlock.call", plugin = "b"));
                }
            });
        });
        let printed = printed.lock().expect("printed");
        assert_eq!(printed.len(), 1);
        assert_eq!(printed[0].lines().count(), 1 + MAX_CHILDREN + 1);
        assert!(printed[0].ends_with("… 10 more calls"), "{}", printed[0]);
    }
}

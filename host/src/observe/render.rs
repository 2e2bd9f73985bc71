//! Prometheus's text exposition format, version 0.0.4, written by hand: a few dozen lines for
//! what a registry crate would add a dependency, a registry and a copy of every value for.
//! What the format asks is all here: `# HELP` escaped (backslash, newline), `# TYPE`, label
//! values escaped (backslash, double quote, newline), values as numbers, `+Inf` for the last
//! bucket.

use std::borrow::Cow;
use std::fmt::Write;

use super::{Kind, Metrics, Value, Visit};

/// Renders every family of `metrics`.
pub(super) fn prometheus(metrics: &Metrics) -> String {
    let mut text = Text(String::new());
    metrics.walk(&mut text);
    text.0
}

struct Text(String);

impl Visit for Text {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(
        &mut self,
        name: &'static str,
        labels: &[(&'static str, Cow<'_, str>)],
        value: Value,
    ) {
        self.0.push_str(name);
        for (i, (key, value)) in labels.iter().enumerate() {
            self.0.push(if i == 0 { '{' } else { ',' });
            self.0.push_str(key);
            self.0.push_str("=\"");
            escape_label(&mut self.0, value);
            self.0.push('"');
        }
        if !labels.is_empty() {
            self.0.push('}');
        }
        let _ = match value {
            Value::Count(n) => writeln!(self.0, " {n}"),
            Value::Seconds(s) => writeln!(self.0, " {s}"),
        };
    }
}

/// A label value as the format escapes it: `\\`, `\"` and `\n`.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::meter::{Observed, TIME_ONE_IN};
    use super::super::PluginMetrics;
    use super::*;

    fn metrics() -> Metrics {
        let mut observed = Observed::default();
        observed.observe(std::time::Duration::from_micros(3));
        observed.observe(std::time::Duration::from_millis(2));
        Metrics::new(vec![PluginMetrics {
            plugin: "p".into(),
            calls: vec![
                ("a".into(), "ok".into(), 5),
                ("a".into(), "panicked".into(), 1),
            ],
            durations: vec![("a".into(), observed)],
            denials: vec![("kv:we\"ird\\key\nnext".into(), 2)],
            requests: vec![
                ("kv".into(), "get".into(), 4),
                ("kv".into(), "set".into(), 1),
            ],
            serial_waits: Some(Observed::default()),
            ..PluginMetrics::default()
        }])
    }

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        let text = metrics().prometheus();
        assert!(
            text.contains(
                r#"airlock_denials_total{plugin="p",capability="kv:we\"ird\\key\nnext"} 2"#
            ),
            "{text}"
        );
        // Nothing a label holds breaks a line: every line is a comment or a sample.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("airlock_"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn histograms_have_cumulative_buckets_a_sum_and_a_count() {
        let text = metrics().prometheus();
        let bucket = |le: &str| {
            let key = format!(
                "airlock_call_duration_seconds_bucket{{plugin=\"p\",action=\"a\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&key))
                .unwrap_or_else(|| panic!("no bucket {le} in {text}"))
                .to_owned()
        };
        assert_eq!(bucket("0.000001"), "0");
        assert_eq!(bucket("0.000005"), "1");
        assert_eq!(bucket("0.0025"), "2");
        assert_eq!(bucket("+Inf"), "2");
        assert!(text
            .contains("airlock_call_duration_seconds_sum{plugin=\"p\",action=\"a\"} 0.002003\n"));
        assert!(text.contains("airlock_call_duration_seconds_count{plugin=\"p\",action=\"a\"} 2\n"));
        assert!(text.contains("# TYPE airlock_call_duration_seconds histogram\n"));
        assert!(text.contains("airlock_serial_wait_seconds_count{plugin=\"p\"} 0\n"));
    }

    #[test]
    fn derived_families_count_what_their_help_says() {
        let text = metrics().prometheus();
        assert!(text.contains("airlock_kv_operations_total{plugin=\"p\",kind=\"read\"} 4\n"));
        assert!(text.contains("airlock_kv_operations_total{plugin=\"p\",kind=\"write\"} 1\n"));
        assert!(text
            .contains("airlock_calls_total{plugin=\"p\",action=\"a\",outcome=\"panicked\"} 1\n"));
        assert!(super::super::DURATION_HELP.contains(&format!(" {TIME_ONE_IN} ")));
    }
}

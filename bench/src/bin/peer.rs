//! A process plugin, the peer Airlock is compared with: reads one JSON object per line, adds a
//! field, answers one line.

use std::io::{BufRead, Write};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let mut value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.insert("seen".to_owned(), serde_json::Value::Bool(true));
        }
        if writeln!(out, "{value}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

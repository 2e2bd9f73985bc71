//! `/pending`: the answers that wait — listed with their descriptions and callers, or one
//! resolved from the console with a JSON answer.

use airlock::approvals::{PendingId, PendingState};

use super::{parse_json, Console};

impl Console<'_> {
    /// `/pending` lists; `/pending resolve ID [JSON]` resolves one.
    pub(super) fn pending(&self, args: &str) -> String {
        let args = args.trim();
        if args.is_empty() {
            return self.pending_list();
        }
        let Some(rest) = args.strip_prefix("resolve") else {
            return "usage: /pending, or /pending resolve ID [JSON]".to_owned();
        };
        let (id, json) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
        let Some(id) = PendingId::parse(id) else {
            return format!(
                "usage: /pending resolve ID [JSON] (an id from /pending; {id:?} is not one)"
            );
        };
        let value = match parse_json(json) {
            Ok(value) => value,
            Err(e) => return e,
        };
        match self.host.resolve(&id, Ok(value)) {
            Ok(entry) => format!("{} resolved ({}.{})", entry.id, entry.plugin, entry.action),
            Err(e) => format!("error {e}"),
        }
    }

    fn pending_list(&self) -> String {
        let entries = self.host.pending_answers();
        let kept = if self.host.pending_is_durable() {
            ""
        } else {
            " (kept in memory: lost when the host stops; set [host] data_dir to keep them)"
        };
        if entries.is_empty() {
            return format!("no pending answers{kept}");
        }
        let mut lines: Vec<String> = entries
            .iter()
            .map(|e| {
                let state = match &e.state {
                    PendingState::Open => "open".to_owned(),
                    PendingState::Resolved(outcome) => format!(
                        "resolved {}",
                        serde_json::to_string(outcome).unwrap_or_default()
                    ),
                    PendingState::Expired => "expired".to_owned(),
                };
                format!(
                    "{} {}.{} for {}: {} [{state}]",
                    e.id, e.plugin, e.action, e.caller, e.description
                )
            })
            .collect();
        if !kept.is_empty() {
            lines.push(kept.trim().to_owned());
        }
        lines.join("\n")
    }
}

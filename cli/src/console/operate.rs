//! The operator's commands: what is loaded (`/plugins`), events, grants, configs, the audit
//! log, dispatch by claim and the calls waiting for approval.

use super::{parse_json, render, Console};

impl Console<'_> {
    pub(super) fn plugins(&self) -> String {
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
                let breakers = breakers(&p.breakers);
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
                ) + &breakers
                    + &p
                        .origin
                        .as_ref()
                        .map(|o| format!("; from {}@{}", o.source, o.digest))
                        .unwrap_or_default()
            })
            .chain(std::iter::once(footer))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(super) fn publish(&self, args: &str) -> String {
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

    pub(super) fn revoke(&self, args: &str) -> String {
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

    pub(super) fn config(&self, args: &str) -> String {
        let (plugin, json) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        if plugin.is_empty() || json.trim().is_empty() {
            return "usage: /config PLUGIN JSON".to_owned();
        }
        let config = match parse_json(json) {
            Ok(value) => value,
            Err(e) => return e,
        };
        match self.host.set_config(plugin, config) {
            Ok(applied) => format!("{plugin}: config {}", applied_text(&applied)),
            Err(e) => format!("error: {e}"),
        }
    }

    pub(super) fn audit(&self, args: &str) -> String {
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

    pub(super) fn dispatch(&self, args: &str) -> String {
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

    pub(super) fn approvals(&self) -> String {
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

    pub(super) fn settle(&self, verb: &str, id: &str) -> String {
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
}

/// How a config change was applied, with the plugin's warnings: what both consoles show.
pub(crate) fn applied_text(applied: &airlock::plugins::ConfigApplied) -> String {
    let how = if applied.live {
        "applied live"
    } else {
        "applied (the plugin was re-created with it)"
    };
    if applied.warnings.is_empty() {
        how.to_owned()
    } else {
        format!("{how} (warnings: {})", applied.warnings.join("; "))
    }
}

/// The breakers of a plugin's dispatched actions that are not closed, one line each (nothing
/// when every one is closed).
fn breakers(breakers: &[airlock::plugins::BreakerInfo]) -> String {
    use airlock::plugins::BreakerState;
    breakers
        .iter()
        .filter(|b| b.state != BreakerState::Closed)
        .map(|b| match (b.state, b.retry_in) {
            (BreakerState::Open, Some(left)) => format!(
                "\n  breaker open on {} after {} failures in a row; a probe in {} ms",
                b.action,
                b.failures,
                left.as_millis()
            ),
            _ => format!("\n  breaker half open on {}: a probe is running", b.action),
        })
        .collect()
}

//! What the page reads (`GET /api/…`), as JSON: the plugins, one plugin with its config and
//! schema, its series, the audit log (filtered), the calls waiting for approval.

use airlock::PluginInfo;
use serde_json::{json as value, Value};

use super::{json, Answer, Served};

/// Records the audit view asks for at most.
const AUDIT_MAX: usize = airlock::services::AUDIT_RING;

/// Answers `GET /api/<path>?<query>`.
pub(super) async fn get(console: &Served, path: &str, query: &str) -> Answer {
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        ["plugins"] => {
            let plugins: Vec<Value> = console.host.plugins().iter().map(summary).collect();
            json(200, &value!({ "plugins": plugins }))
        }
        ["plugins", id] => match console.host.plugin(id) {
            Some(info) => json(200, &detail(&info)),
            None => unknown(id),
        },
        ["plugins", id, "series"] => match console.host.plugin(id) {
            Some(_) => json(200, &console.series.of(id)),
            None => unknown(id),
        },
        ["audit"] => json(200, &value!({ "records": audit(console, query) })),
        ["approvals"] => json(200, &value!({ "approvals": approvals(console) })),
        _ => {
            let message = format!("no API at /api/{path}");
            json(404, &value!({ "ok": false, "message": message }))
        }
    }
}

/// `404` for a plugin that is not loaded.
pub(super) fn unknown(id: &str) -> Answer {
    let message = format!("no plugin {id} is loaded");
    json(404, &value!({ "ok": false, "message": message }))
}

/// A plugin as the plugins view lists it.
pub(super) fn summary(p: &PluginInfo) -> Value {
    let isolation = match p.isolation {
        airlock::policy::Isolation::Process => "process",
        airlock::policy::Isolation::InProcess => "in-process",
    };
    value!({
        "id": p.id,
        "version": p.version,
        "description": p.description,
        "state": p.state.to_string(),
        "generation": p.generation,
        "isolation": isolation,
        "signature": p.signature.to_string(),
        "origin": p.origin,
        "grants": p.grants,
        "counters": p.stats,
    })
}

/// A plugin as its own view shows it: the summary, its actions, health, breakers, and its
/// config as written (references unresolved) with the schema the form is made from.
fn detail(p: &PluginInfo) -> Value {
    let mut shown = summary(p);
    let health = match &p.health {
        None => "not yet polled".to_owned(),
        Some(airlock_abi::Health::Ok) => "ok".to_owned(),
        Some(airlock_abi::Health::Degraded(d)) => format!("degraded: {d}"),
        Some(airlock_abi::Health::Error(e)) => format!("error: {e}"),
    };
    if let Some(map) = shown.as_object_mut() {
        map.insert(
            "actions".into(),
            p.actions
                .iter()
                .map(|a| Value::from(a.name.as_str()))
                .collect(),
        );
        map.insert("health".into(), health.into());
        map.insert("breakers".into(), value!(p.breakers));
        map.insert("config".into(), p.config.clone());
        map.insert("config_schema".into(), value!(p.config_schema));
    }
    shown
}

/// The audit records the query asks for, newest first: `q` a text every record shown holds
/// in its plugin, outcome, capability or detail; `limit` how many at most.
fn audit(console: &Served, query: &str) -> Vec<Value> {
    let mut q = String::new();
    let mut limit = 200;
    for (key, val) in airlock_abi::route::parse_query(query) {
        match key.as_str() {
            "q" => q = val.to_lowercase(),
            "limit" => limit = val.parse().unwrap_or(limit).min(AUDIT_MAX),
            _ => {}
        }
    }
    console
        .host
        .audit()
        .tail(AUDIT_MAX)
        .into_iter()
        .rev()
        .filter(|r| {
            q.is_empty()
                || [&r.plugin, &r.capability, &r.detail]
                    .iter()
                    .any(|t| t.to_lowercase().contains(&q))
                || value!(r.outcome).as_str().is_some_and(|o| o.contains(&q))
        })
        .take(limit)
        .map(|r| value!(r))
        .collect()
}

/// The calls waiting for approval.
pub(super) fn approvals(console: &Served) -> Vec<Value> {
    console
        .host
        .pending_approvals()
        .iter()
        .map(|r| {
            value!({
                "id": r.id.0,
                "plugin": r.plugin,
                "name": r.name,
                "hook": r.hook,
                "caller": r.caller,
                "input": String::from_utf8_lossy(&r.input),
            })
        })
        .collect()
}

//! What the page changes (`POST /api/…` with a JSON body): disable, enable, reload, revoke a
//! capability, check then apply a config, approve or refuse a call — each through the same
//! [`airlock::Host`] method as the line console, run as the web console's operator
//! ([`airlock::Host::as_operator`]) so that the audit log says who acted.

use airlock::approvals::ApprovalId;
use airlock::{Error, Reply};
use bytes::Bytes;
use serde_json::{json as value, Value};

use super::{json, Answer, Served};

/// Answers `POST <uri>` with `body`.
pub(super) async fn act(console: &Served, uri: &hyper::Uri, body: Bytes) -> Answer {
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        match serde_json::from_slice(&body) {
            Ok(input) => input,
            Err(e) => return refused(400, format!("the body is not JSON: {e}")),
        }
    };
    let path = uri.path().strip_prefix("/api/").unwrap_or("");
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        ["plugins", id, verb @ ("disable" | "enable" | "reload")] => {
            let (id, verb) = (id.to_owned(), verb.to_owned());
            operate(console, move |host| lifecycle(host, &id, &verb)).await
        }
        ["plugins", id, "revoke"] => {
            let Some(capability) = input.get("capability").and_then(Value::as_str) else {
                return refused(
                    400,
                    "send {\"capability\": \"…\"}: the capability to revoke".into(),
                );
            };
            let (id, capability) = (id.to_owned(), capability.trim().to_owned());
            operate(console, move |host| {
                match host.revoke_capability(&id, &capability) {
                    Ok(removed) if removed.is_empty() => {
                        Ok(format!("{id} had no grant matching {capability}"))
                    }
                    Ok(removed) => Ok(format!("revoked {}", removed.join(", "))),
                    Err(e) => Err(e),
                }
            })
            .await
        }
        ["plugins", id, "config", ref rest @ ..] if matches!(rest, [] | ["check"]) => {
            let Some(config) = input.get("config").cloned() else {
                return refused(400, "send {\"config\": {…}}: the config to check".into());
            };
            config_change(console, id.to_owned(), config, rest.is_empty()).await
        }
        ["approvals", id, verb @ ("approve" | "refuse")] => {
            let Ok(id) = id.trim_start_matches('#').parse::<u64>() else {
                return refused(400, format!("{id} is not the number of an approval"));
            };
            settle(console, ApprovalId(id), verb == "approve").await
        }
        _ => refused(404, format!("no action at /api/{path}")),
    }
}

/// Disables, enables or reloads a plugin, saying how it went as the line console does.
fn lifecycle(host: &airlock::Host, id: &str, verb: &str) -> Result<String, Error> {
    match verb {
        "disable" => host.disable(id).map(|record| {
            let mut text = "disabled".to_owned();
            for dependent in &record.dependents {
                text.push_str(&format!(
                    "; {} disabled with it, as it depends on {id}",
                    dependent.id
                ));
            }
            text
        }),
        "enable" => host.enable(id).map(|()| "enabled".to_owned()),
        _ => host.reload(id).map(|outcome| outcome.to_string()),
    }
}

/// Runs an operator's action and answers its outcome.
async fn operate(
    console: &Served,
    act: impl FnOnce(&airlock::Host) -> Result<String, Error> + Send + 'static,
) -> Answer {
    match console.blocking(act).await {
        Some(Ok(message)) => json(200, &value!({ "ok": true, "message": message })),
        Some(Err(e)) => refused_by_host(&e),
        None => refused(500, "the action failed inside the host".into()),
    }
}

/// Checks a config with [`airlock::Host::check_config`] and, with `apply`, applies it as the
/// line console's `/config` does. A refused config changes nothing; the answer carries the
/// schema's or the plugin's own messages.
async fn config_change(console: &Served, id: String, config: Value, apply: bool) -> Answer {
    let done = console
        .blocking(move |host| {
            let checked = host.check_config(&id, &config)?;
            if !apply {
                return Ok(value!({
                    "ok": true,
                    "message": "the config is valid",
                    "config": checked.config,
                    "defaults": checked.defaults,
                    "warnings": checked.warnings,
                }));
            }
            let applied = host.set_config(&id, config)?;
            let how = if applied.live {
                "applied live"
            } else {
                "applied (the plugin was re-created with it)"
            };
            let warnings = if applied.warnings.is_empty() {
                String::new()
            } else {
                format!(" (warnings: {})", applied.warnings.join("; "))
            };
            Ok(value!({
                "ok": true,
                "message": format!("config {how}{warnings}"),
                "warnings": applied.warnings,
            }))
        })
        .await;
    match done {
        Some(Ok(answer)) => json(200, &answer),
        Some(Err(e)) => refused_by_host(&e),
        None => refused(500, "the config change failed inside the host".into()),
    }
}

/// Approves a call (it runs now, and its answer is shown) or refuses it.
async fn settle(console: &Served, id: ApprovalId, approve: bool) -> Answer {
    let done = console
        .blocking(move |host| {
            if !approve {
                return match host.refuse_approval(id, "refused at the web console") {
                    true => Ok(value!({ "ok": true, "message": "refused" })),
                    false => Err(format!("no call waits for approval {id}")),
                };
            }
            match host.approve(id) {
                Ok(Reply::Ok(answer)) => Ok(value!({
                    "ok": true,
                    "message": format!("approved: {answer}"),
                    "answer": answer,
                })),
                Ok(Reply::Error(message)) => Ok(value!({
                    "ok": true,
                    "message": format!("approved; the action answered an error: {message}"),
                    "error": message,
                })),
                Ok(other) => Ok(value!({
                    "ok": true,
                    "message": format!("approved: {}", value!(other)),
                })),
                Err(e) => Err(format!("{}: {}", e.code, e.message)),
            }
        })
        .await;
    match done {
        Some(Ok(answer)) => json(200, &answer),
        Some(Err(message)) => refused(409, message),
        None => refused(500, "the decision failed inside the host".into()),
    }
}

/// A refusal the host gave: `404` for a plugin that is not loaded, `422` for a config it
/// rejected (with each message), `409` for the rest.
fn refused_by_host(e: &Error) -> Answer {
    match e {
        Error::UnknownPlugin(_) => refused(404, e.to_string()),
        Error::ConfigRejected { errors, .. } => json(
            422,
            &value!({ "ok": false, "message": e.to_string(), "errors": errors }),
        ),
        _ => refused(409, e.to_string()),
    }
}

fn refused(status: u16, message: String) -> Answer {
    json(status, &value!({ "ok": false, "message": message }))
}

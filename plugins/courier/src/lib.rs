//! `courier`: talks to the world only through the host. `fetch` GETs a URL with `ctx.http()` —
//! the operator's `http.outbound` grants, schemes, address ranges and limits decide what it
//! may reach, and every call is audited. `relay` streams a URL's body (server-sent events,
//! NDJSON, a large file) to its own caller chunk by chunk as it arrives, holding none of it. Its routes answer webhooks the host receives:
//! `POST /plugins/courier/webhook` keeps the JSON body in the plugin's kv under the request's
//! id, `GET /plugins/courier/status` says how many it kept and who asks, and
//! `DELETE /plugins/courier/webhook` is declared without an action (`501`). `echo` serves the
//! rest with what the request showed it: `GET /items/{id}`, `GET /items/latest` (an exact
//! segment wins over a parameter), `GET /files/{*rest}`, and two public routes the host serves
//! without the program's authentication, only with a valid signature — `POST /github` (GitHub's
//! `X-Hub-Signature-256`, with the operator's secret `github_hook`) and `POST /slack` (Slack's
//! `X-Slack-Signature`, with `slack_hook`).

use airlock_abi::{
    ActionError, Actions, Context, HttpRequest, Incoming, InitError, Outgoing, Plugin,
};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fetch {
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Relay {
    url: String,
    #[serde(default)]
    credential: Option<String>,
}

/// The plugin.
pub struct Courier {
    ctx: Context,
}

impl Courier {
    fn webhook(&self, request: Incoming) -> Result<Outgoing, ActionError> {
        let event: Value = request.json()?;
        let key = format!("webhook/{}", request.head.request_id);
        self.ctx.kv().set(&key, &event)?;
        self.ctx.info_with(
            "webhook received",
            &[
                ("request_id", request.head.request_id.clone().into()),
                ("event", request.header("x-event").unwrap_or("").into()),
                ("bytes", request.body.len().into()),
            ],
        );
        Outgoing::json(&json!({
            "stored": key,
            "event": request.header("x-event"),
            "query": request.head.query,
        }))
        .map(|response| response.with_status(202))
    }

    fn echo(&self, request: Incoming) -> Result<Outgoing, ActionError> {
        let caller = self.ctx.caller()?.to_string();
        Outgoing::json(&json!({
            "method": request.head.method,
            "path": request.head.path,
            "params": request.head.params,
            "id": request.param("id"),
            "query": request.query_params(),
            "q": request.query_param("q"),
            "headers": request.head.headers,
            "body": String::from_utf8_lossy(&request.body),
            "request_id": request.head.request_id,
            "caller": caller,
        }))
        // The host's id is the only one: this is dropped.
        .map(|response| response.header("X-Request-Id", "chosen-by-courier"))
    }

    /// Streams `input.url`'s body to the caller with `ctx.emit_bytes`, chunk by chunk; answers
    /// the status, how many chunks and bytes it relayed, and the error that ended it, if one did.
    fn relay(&self, input: Relay) -> Result<Value, ActionError> {
        let mut request = HttpRequest::new("GET", &input.url);
        if let Some(name) = &input.credential {
            request = request.credential(name);
        }
        let stream = match self.ctx.http().stream(&request) {
            Ok(stream) => stream,
            Err(e) => return Ok(json!({ "error": e.to_string() })),
        };
        let (status, mut chunks, mut bytes) = (stream.status, 0u64, 0u64);
        for chunk in stream {
            match chunk {
                Ok(chunk) => {
                    self.ctx.emit_bytes(&chunk)?;
                    chunks += 1;
                    bytes += chunk.len() as u64;
                }
                Err(e) => {
                    return Ok(json!({
                        "status": status, "chunks": chunks, "bytes": bytes, "error": e.to_string()
                    }))
                }
            }
        }
        Ok(json!({ "status": status, "chunks": chunks, "bytes": bytes }))
    }

    fn status(&self, _request: Incoming) -> Result<Outgoing, ActionError> {
        let kept = self.ctx.kv().keys("webhook/")?.len();
        let caller = self.ctx.caller()?.to_string();
        Outgoing::json(&json!({ "webhooks": kept, "caller": caller }))
    }
}

impl Plugin for Courier {
    fn create(ctx: Context) -> Result<Self, InitError> {
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("fetch", |this: &Self, input: Fetch| {
                let response = this.ctx.http().get(&input.url)?;
                Ok::<_, ActionError>(json!({
                    "status": response.status,
                    "text": response.text(),
                }))
            })
            .add("relay", Self::relay)
            .add_route("webhook", Self::webhook)
            .add_route("status", Self::status)
            .add_route("echo", Self::echo);
    }
}

airlock_abi::export_plugin!(Courier);

#[cfg(test)]
mod tests {
    use airlock::testing::TestHost;
    use airlock_abi::route::RouteHead;
    use airlock_abi::wire;
    use serde_json::{json, Value};

    use super::Courier;

    #[test]
    fn a_webhook_is_kept_under_its_request_id() {
        let courier = TestHost::new()
            .grants(&["kv"])
            .create::<Courier>()
            .expect("created");
        let head = RouteHead {
            method: "POST".to_owned(),
            path: "/webhook".to_owned(),
            query: "source=test".to_owned(),
            headers: vec![("X-Event".to_owned(), "push".to_owned())],
            request_id: "r-1".to_owned(),
            params: Vec::new(),
        };
        let input = wire::frame(&head, br#"{"ref": "main"}"#).expect("framed");
        let answer = courier
            .call_bytes("webhook", &input)
            .expect("served")
            .ok()
            .expect("answered");
        let (head, body) =
            wire::unframe::<airlock_abi::route::ResponseHead>(&answer).expect("a response");
        assert_eq!(head.status, 202);
        let body: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(body["stored"], "webhook/r-1");
        assert_eq!(body["event"], "push");
        assert_eq!(courier.kv()["webhook/r-1"], json!({"ref": "main"}));
    }
}

//! `airlock mcp` driven by the official MCP SDK's client (`rmcp`): it lists the plugins'
//! actions as tools with their schemas and hints, calls one and receives what it streams as
//! progress, sees a capability denial as a tool error with its stable code, cancels a long
//! call (the plugin sees it), and sees the tool list change when a plugin is hot-reloaded; a
//! schema-less action takes the client's flat arguments, and none of them is ever dropped.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_tests::{fixture_bytes, TempPluginDir};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest, Implementation,
    ProgressNotificationParam, Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

/// The test's MCP client: records progress, and wakes the test when the tools change.
struct Client {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    tools_changed: Arc<Notify>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("airlock-e2e", "1.0.0"),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.push(params);
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.tools_changed.notify_one();
    }
}

impl Client {
    fn new() -> Self {
        Self {
            progress: Arc::new(Mutex::new(Vec::new())),
            tools_changed: Arc::new(Notify::new()),
        }
    }
}

/// The runtime a test's client runs on.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `airlock mcp DIR --policy POLICY` with the `extra` flags, as the client's transport, its
/// standard error piped (returned) or inherited.
pub(crate) fn spawn_mcp(
    dir: &Path,
    policy: &Path,
    extra: &[&str],
    piped: bool,
) -> (TokioChildProcess, Option<tokio::process::ChildStderr>) {
    let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli")).configure(|c| {
        c.arg("mcp")
            .arg(dir)
            .arg("--policy")
            .arg(policy)
            .args(extra);
    });
    let stderr = if piped {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::inherit()
    };
    TokioChildProcess::builder(command)
        .stderr(stderr)
        .spawn()
        .expect("airlock mcp starts")
}

/// Whether `done` holds within 10 s (looked at every 10 ms).
async fn eventually(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

fn arguments(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[test]
fn an_mcp_client_lists_calls_streams_cancels_and_sees_a_reload() {
    let dir = TempPluginDir::with(&["tally", "long-call"]);
    let work = tempfile::tempdir().expect("tempdir");
    let trace = work.path().join("trace");
    let policy = work.path().join("policy.toml");
    // tally is not granted kv: its `totals` is a capability denial. Its `reset` is denied to
    // MCP clients by a permission naming their role.
    std::fs::write(
        &policy,
        format!(
            "[plugins.long-call.config]\ntrace = {trace:?}\n\
             [[plugins.tally.permissions]]\nactions = [\"reset\"]\ncallers = [\"role:mcp\"]\n\
             decision = \"deny\"\n"
        ),
    )
    .expect("policy");
    let runtime = runtime();
    runtime.block_on(async {
        let (transport, _stderr) = spawn_mcp(dir.path(), &policy, &["--debounce-ms", "100"], false);
        let progress = Arc::new(Mutex::new(Vec::new()));
        let tools_changed = Arc::new(Notify::new());
        let client = Client {
            progress: progress.clone(),
            tools_changed: tools_changed.clone(),
        }
        .serve(transport)
        .await
        .expect("initialized");

        // The tools: each action with its schema and hints; route actions are not tools.
        let tools = client.list_all_tools().await.expect("tools");
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        for want in [
            "tally__count",
            "tally__totals",
            "tally__reset",
            "long-call__patient",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert!(!names.contains(&"long-call__slow_route"), "{names:?}");
        let count = tools
            .iter()
            .find(|t| t.name == "tally__count")
            .expect("count");
        assert_eq!(count.input_schema["required"], json!(["text"]));
        let hints = count.annotations.as_ref().expect("annotations");
        assert_eq!(hints.title.as_deref(), Some("Count words"));
        assert_eq!(hints.read_only_hint, Some(true));
        let reset = tools
            .iter()
            .find(|t| t.name == "tally__reset")
            .expect("reset");
        assert_eq!(
            reset.annotations.as_ref().and_then(|a| a.destructive_hint),
            Some(true)
        );
        // An action whose input is not an object takes it under "input".
        let patient = tools
            .iter()
            .find(|t| t.name == "long-call__patient")
            .expect("patient");
        assert_eq!(
            patient.input_schema["properties"]["input"]["maximum"],
            60000
        );

        // A call through the membrane, its chunks as progress, then its answer.
        let text = "one two three two one two";
        let handle = client
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(
                    CallToolRequestParams::new("tally__count")
                        .with_arguments(arguments(json!({"text": text, "top": 1}))),
                )),
                PeerRequestOptions::no_options(),
            )
            .await
            .expect("sent");
        let ServerResult::CallToolResult(counted) =
            handle.await_response().await.expect("answered")
        else {
            panic!("not a tool result")
        };
        assert_ne!(counted.is_error, Some(true), "{counted:?}");
        let answer = counted.structured_content.expect("structured");
        assert_eq!(answer["words"], 6);
        assert_eq!(answer["top"], json!([{"word": "two", "count": 3}]));
        eventually(|| progress.lock().expect("progress").len() >= 6).await;
        // The client may handle notifications out of order; their numbers say the server's.
        let mut received = progress.lock().expect("progress").clone();
        received.sort_by(|a, b| a.progress.total_cmp(&b.progress));
        let numbers: Vec<f64> = received.iter().map(|p| p.progress).collect();
        assert_eq!(numbers, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let messages: Vec<String> = received.iter().filter_map(|p| p.message.clone()).collect();
        assert_eq!(messages.len(), 6, "{messages:?}");
        assert_eq!(messages[3], r#"{"word":"two","count":2}"#);

        // A capability denial is a tool error with its stable code.
        let denied = client
            .call_tool(CallToolRequestParams::new("tally__totals"))
            .await
            .expect("answered");
        assert_eq!(denied.is_error, Some(true));
        assert_eq!(
            denied.structured_content.as_ref().map(|s| &s["code"]),
            Some(&json!("capability_violation")),
            "{denied:?}"
        );
        // So is a permission the policy denies to the client (it calls as `mcp:<its name>`,
        // role `mcp`).
        let refused = client
            .call_tool(CallToolRequestParams::new("tally__reset"))
            .await
            .expect("answered");
        let refused = refused.structured_content.expect("structured");
        assert_eq!(refused["code"], "permission_denied", "{refused}");
        // So is an input that does not fit the schema.
        let bad = client
            .call_tool(
                CallToolRequestParams::new("tally__count")
                    .with_arguments(arguments(json!({"text": 7}))),
            )
            .await
            .expect("answered");
        assert_eq!(
            bad.structured_content.as_ref().map(|s| &s["code"]),
            Some(&json!("bad_input"))
        );

        // Cancelling a long call: the plugin sees it and stops.
        let started = Instant::now();
        let handle = client
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(
                    CallToolRequestParams::new("long-call__patient")
                        .with_arguments(arguments(json!({"input": 60000}))),
                )),
                PeerRequestOptions::no_options(),
            )
            .await
            .expect("sent");
        let traced = |what: &str| {
            std::fs::read_to_string(&trace)
                .unwrap_or_default()
                .contains(what)
        };
        eventually(|| traced("patient started")).await;
        handle
            .cancel(Some("the test".into()))
            .await
            .expect("cancelled");
        eventually(|| traced("patient saw cancelled")).await;
        assert!(
            traced("patient saw cancelled"),
            "the plugin never saw its call cancelled"
        );
        assert!(started.elapsed() < Duration::from_secs(10));

        // Cancelling a call that streams faster than progress is written: the plugin's stream
        // stops, and the server goes on serving.
        let handle = client
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(
                    CallToolRequestParams::new("long-call__chunks")
                        .with_arguments(arguments(json!({"count": 10_000_000}))),
                )),
                PeerRequestOptions::no_options(),
            )
            .await
            .expect("sent");
        let before = progress.lock().expect("progress").len();
        eventually(|| progress.lock().expect("progress").len() >= before + 50).await;
        handle
            .cancel(Some("the test".into()))
            .await
            .expect("cancelled");
        eventually(|| traced("chunks stopped after")).await;
        assert!(traced("chunks stopped after"), "the stream never stopped");
        let again = client
            .call_tool(
                CallToolRequestParams::new("tally__count")
                    .with_arguments(arguments(json!({"text": "still here"}))),
            )
            .await
            .expect("answered");
        assert_ne!(again.is_error, Some(true), "{again:?}");

        // A hot reload that changes the plugin's actions changes the tools.
        let next = dir.path().join("next.tmp");
        std::fs::write(&next, fixture_bytes("tally-next")).expect("write");
        std::fs::rename(
            &next,
            dir.path()
                .join(format!("tally.{}", airlock::pipeline::library_suffix())),
        )
        .expect("replace");
        tokio::time::timeout(Duration::from_secs(20), tools_changed.notified())
            .await
            .expect("told the tools changed");
        let names: Vec<String> = client
            .list_all_tools()
            .await
            .expect("tools")
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert!(names.contains(&"tally__summary".to_owned()), "{names:?}");
        assert!(!names.contains(&"tally__reset".to_owned()), "{names:?}");
        let summary = client
            .call_tool(
                CallToolRequestParams::new("tally__summary")
                    .with_arguments(arguments(json!({"text": "a b c d"}))),
            )
            .await
            .expect("answered");
        assert_ne!(summary.is_error, Some(true), "{summary:?}");

        client.cancel().await.expect("closed");
    });
}

#[test]
fn a_plugins_shutdown_request_ends_the_mcp_server_cleanly() {
    use tokio::io::AsyncReadExt;

    let dir = TempPluginDir::with(&["orchestrator"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[plugins.orchestrator]\ngrants = [\"host.control\"]\n",
    )
    .expect("policy");
    let runtime = runtime();
    runtime.block_on(async {
        let (transport, stderr) = spawn_mcp(dir.path(), &policy, &["--no-watch"], true);
        let mut stderr = stderr.expect("its standard error");
        let client = Client::new().serve(transport).await.expect("initialized");
        // The client keeps its end open: only the plugin's request can end the server. Its
        // answer may or may not arrive before the server goes.
        let answer = client
            .call_tool(
                CallToolRequestParams::new("orchestrator__shutdown")
                    .with_arguments(arguments(json!({"reason": "the batch is done"}))),
            )
            .await;
        // Its standard error, up to its end (the server exits) or a minute.
        let mut bytes = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut ended = false;
        while !ended && tokio::time::Instant::now() < deadline {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, stderr.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => ended = true,
                Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        let said = String::from_utf8_lossy(&bytes);
        assert!(
            ended,
            "the server did not exit after the request ({answer:?}): {said}"
        );
        assert!(
            said.contains(
                "shutting down: plugin orchestrator (generation 1) asked the host to shut down: \
                 the batch is done"
            ) && said.contains("orchestrator: Clean"),
            "{said}"
        );
        drop(client);
    });
}

#[test]
fn a_schema_less_tool_takes_flat_arguments_and_a_wrapped_one_refuses_strays() {
    let dir = TempPluginDir::with(&["hello", "long-call"]);
    let work = tempfile::tempdir().expect("tempdir");
    let policy = work.path().join("policy.toml");
    let trace = work.path().join("trace");
    std::fs::write(
        &policy,
        format!("[plugins.long-call.config]\ntrace = {trace:?}\n"),
    )
    .expect("policy");
    let runtime = runtime();
    runtime.block_on(async {
        let (transport, _stderr) = spawn_mcp(dir.path(), &policy, &["--no-watch"], false);
        let client = Client::new().serve(transport).await.expect("initialized");
        let tools = client.list_all_tools().await.expect("tools");
        let greet = tools
            .iter()
            .find(|t| t.name == "hello__greet")
            .expect("greet");
        // hello's `greet` declares no schema: its tool is any object, not `{"input": …}`.
        assert_eq!(greet.input_schema["type"], "object", "{greet:?}");
        assert!(greet.input_schema.get("properties").is_none(), "{greet:?}");
        let text = |result: &rmcp::model::CallToolResult| -> String {
            result
                .content
                .iter()
                .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                .collect()
        };
        // The client's flat arguments are the input (they used to be dropped: "world").
        let greeted = client
            .call_tool(
                CallToolRequestParams::new("hello__greet")
                    .with_arguments(arguments(json!({"name": "Ada"}))),
            )
            .await
            .expect("answered");
        assert_ne!(greeted.is_error, Some(true), "{greeted:?}");
        assert_eq!(text(&greeted), "\"Hello, Ada!\"", "{greeted:?}");
        // No arguments, and `{}`, are `null`: an action taking nothing accepts both.
        for given in [None, Some(Map::new())] {
            let mut request = CallToolRequestParams::new("hello__config");
            if let Some(given) = given.clone() {
                request = request.with_arguments(given);
            }
            let shown = client.call_tool(request).await.expect("answered");
            assert_ne!(shown.is_error, Some(true), "{given:?}: {shown:?}");
            let greeted = client
                .call_tool(
                    CallToolRequestParams::new("hello__greet")
                        .with_arguments(given.clone().unwrap_or_default()),
                )
                .await
                .expect("answered");
            assert_eq!(text(&greeted), "\"Hello, world!\"", "{greeted:?}");
        }
        // A tool whose input is not an object takes it under "input" alone: an argument beside
        // it is refused, naming it, rather than dropped.
        let stray = client
            .call_tool(
                CallToolRequestParams::new("long-call__patient")
                    .with_arguments(arguments(json!({"input": 1, "ms": 5}))),
            )
            .await
            .expect_err("refused");
        assert!(
            stray.to_string().contains("\"ms\"") && stray.to_string().contains("dropped"),
            "{stray}"
        );
        let patient = client
            .call_tool(
                CallToolRequestParams::new("long-call__patient")
                    .with_arguments(arguments(json!({"input": 1}))),
            )
            .await
            .expect("answered");
        assert_ne!(patient.is_error, Some(true), "{patient:?}");
        client.cancel().await.expect("closed");
    });
}

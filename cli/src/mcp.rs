//! `airlock mcp`: the loaded plugins' actions as the tools of a Model Context Protocol server
//! over standard input and output (the official SDK, `rmcp`). A tool call is a call through
//! the whole membrane — permissions, grants, audit — on behalf of the MCP client (principal
//! `mcp:<client name>`, role `mcp`); what the action emits reaches the client as progress
//! notifications, the client's cancellation cancels the call, a `CallError` is a tool error
//! carrying its stable code, and a hot reload tells the client the tool list changed.
//!
//! A tool is `<plugin>__<action>`. An action whose input schema is an object takes the
//! tool's arguments as its input; any other takes them under `input`. Actions that serve HTTP
//! routes are not tools. Standard output carries the protocol alone: the process's own
//! standard output (a plugin that prints, a worker) is sent to standard error.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::{
    ActionOutcome, CallError, CancelToken, Chunk, Host, PluginInfo, PluginState, ReloadOutcome,
};
use airlock_abi::manifest::ActionDecl;
use airlock_abi::wire::Principal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};

/// How many chunks of a call may wait to be sent as progress before the plugin waits.
const PROGRESS_BUFFER: usize = 16;

/// The MCP server: the host and who the client said it is.
#[derive(Clone)]
struct Server {
    host: Arc<Host>,
    client: Arc<Mutex<Option<String>>>,
}

/// One tool: which action it calls, and whether its arguments are wrapped under `input`.
struct Target {
    plugin: String,
    action: String,
    wrapped: bool,
}

/// The tool's name for an action.
fn tool_name(plugin: &str, action: &str) -> String {
    format!("{plugin}__{action}")
}

/// Whether an input schema describes an object (so the tool's arguments are the input).
fn takes_object(schema: Option<&Value>) -> bool {
    schema.and_then(|s| s.get("type")).and_then(Value::as_str) == Some("object")
}

/// The actions of running plugins that are tools (not route handlers), with their plugin.
fn actions(host: &Host) -> Vec<(PluginInfo, ActionDecl)> {
    let mut tools = Vec::new();
    for plugin in host.plugins() {
        if plugin.state != PluginState::Running {
            continue;
        }
        for action in &plugin.actions {
            let routed = plugin
                .routes
                .iter()
                .any(|r| r.action.as_deref() == Some(&action.name));
            if !routed {
                tools.push((plugin.clone(), action.clone()));
            }
        }
    }
    tools
}

fn tool(plugin: &PluginInfo, action: &ActionDecl) -> Tool {
    let schema = match &action.input_schema {
        Some(Value::Object(schema)) if takes_object(action.input_schema.as_ref()) => schema.clone(),
        other => {
            let input = other.clone().unwrap_or_else(|| json!({}));
            let object = json!({
                "type": "object",
                "properties": { "input": input },
                "description": format!("The input of {}.{}, under \"input\"", plugin.id, action.name),
            });
            match object {
                Value::Object(object) => object,
                _ => JsonObject::new(),
            }
        }
    };
    let description = if action.description.is_empty() {
        format!("{} (plugin {})", action.name, plugin.id)
    } else {
        format!("{} (plugin {})", action.description, plugin.id)
    };
    let mut annotations = ToolAnnotations::new()
        .read_only(action.read_only)
        .destructive(action.destructive)
        .idempotent(action.idempotent);
    annotations.title = action.title.clone();
    Tool::new(
        tool_name(&plugin.id, &action.name),
        description,
        Arc::new(schema),
    )
    .with_annotations(annotations)
}

impl Server {
    fn target(&self, name: &str) -> Option<Target> {
        actions(&self.host)
            .into_iter()
            .find(|(p, a)| tool_name(&p.id, &a.name) == name)
            .map(|(plugin, action)| Target {
                wrapped: !takes_object(action.input_schema.as_ref()),
                plugin: plugin.id,
                action: action.name,
            })
    }

    /// The party tool calls are made for: the MCP client, by the name it gave.
    fn principal(&self) -> Principal {
        let name = self
            .client
            .lock()
            .ok()
            .and_then(|c| c.clone())
            .unwrap_or_else(|| "client".to_owned());
        Principal::new(format!("mcp:{name}"), &["mcp"])
    }
}

/// A chunk as progress text.
fn chunk_text(chunk: &Chunk) -> String {
    match chunk {
        Chunk::Json(value) => value.to_string(),
        Chunk::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// How a call ended, as a tool result.
fn result(answered: Result<ActionOutcome, CallError>) -> CallToolResult {
    match answered {
        Ok(ActionOutcome::Ok(Value::Object(object))) => {
            CallToolResult::structured(Value::Object(object))
        }
        Ok(ActionOutcome::Ok(value)) => {
            CallToolResult::success(vec![ContentBlock::text(value.to_string())])
        }
        Ok(ActionOutcome::Error(error)) => CallToolResult::structured_error(json!({
            "code": "error",
            "message": error,
        })),
        Ok(ActionOutcome::PendingApproval(id)) => CallToolResult::structured_error(json!({
            "code": "pending_approval",
            "message": format!("the operator must approve this call first (approval #{id})"),
        })),
        Err(e) => CallToolResult::structured_error(json!({
            "code": e.code.to_string(),
            "message": e.to_string(),
        })),
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.remember_client(&context);
        let tools = actions(&self.host)
            .iter()
            .map(|(plugin, action)| tool(plugin, action))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.remember_client(&context);
        let Some(target) = self.target(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!(
                    "no tool {:?}: it is not an action of a running plugin",
                    request.name
                ),
                None,
            ));
        };
        let arguments = request.arguments.unwrap_or_default();
        let input = if target.wrapped {
            arguments.get("input").cloned().unwrap_or(Value::Null)
        } else {
            Value::Object(arguments)
        };
        let progress = context.meta.get_progress_token();
        let token = CancelToken::new();
        let (chunks, mut taken) = tokio::sync::mpsc::channel::<String>(PROGRESS_BUFFER);
        let mut call = {
            let (host, principal, token) = (self.host.clone(), self.principal(), token.clone());
            let streamed = progress.is_some();
            tokio::task::spawn_blocking(move || {
                let on_behalf = host.as_principal(&principal);
                let (plugin, action) = (&target.plugin, &target.action);
                if streamed {
                    // The plugin waits while the client is behind (a bounded buffer).
                    on_behalf.call_stream(plugin, action, &input, &token, |chunk| {
                        let _ = chunks.blocking_send(chunk_text(&chunk));
                    })
                } else {
                    on_behalf.call_cancellable(plugin, action, &input, &token)
                }
            })
        };
        let mut sent = 0u32;
        let mut notify = |text: String| {
            sent += 1;
            progress.clone().map(|token| {
                ProgressNotificationParam::new(token, f64::from(sent)).with_message(text)
            })
        };
        loop {
            tokio::select! {
                () = context.ct.cancelled() => {
                    // The client cancelled: the plugin sees `ctx.cancelled()`; its answer is
                    // not sent (the client no longer waits for it).
                    token.cancel();
                    let _ = call.await;
                    return Ok(CallToolResult::error(vec![ContentBlock::text("cancelled")]).into());
                }
                Some(text) = taken.recv() => {
                    if let Some(param) = notify(text) {
                        let _ = context.peer.notify_progress(param).await;
                    }
                }
                answered = &mut call => {
                    // What was emitted before the answer goes first.
                    while let Ok(text) = taken.try_recv() {
                        if let Some(param) = notify(text) {
                            let _ = context.peer.notify_progress(param).await;
                        }
                    }
                    return Ok(match answered {
                        Ok(answered) => result(answered),
                        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                            "the call failed in the server: {e}"
                        ))]),
                    }
                    .into());
                }
            }
        }
    }
}

impl Server {
    fn remember_client(&self, context: &RequestContext<RoleServer>) {
        if let (Some(info), Ok(mut client)) = (context.peer.peer_info(), self.client.lock()) {
            if client.is_none() {
                *client = Some(info.client_info.name.clone());
            }
        }
    }
}

/// Serves `host`'s plugins over MCP on standard input and output until the client closes its
/// end; with `watch`, rebuilt libraries are reloaded and the client told the tools changed.
///
/// # Errors
///
/// Standard output cannot be set aside for the protocol, the runtime cannot start, the
/// directories cannot be watched, or the client's handshake fails.
pub fn serve(host: Host, watch: Option<Duration>) -> Result<(), Box<dyn std::error::Error>> {
    // The protocol gets the real standard output; anything else written there goes to
    // standard error instead.
    let protocol = File::from(rustix::io::dup(std::io::stdout())?);
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    let host = Arc::new(host);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let server = Server {
            host: host.clone(),
            client: Arc::new(Mutex::new(None)),
        };
        let transport = (tokio::io::stdin(), tokio::fs::File::from_std(protocol));
        let running = server.serve(transport).await?;
        let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel::<()>();
        let _watcher = match watch {
            Some(debounce) => Some(host.watch(debounce, move |outcome| {
                eprintln!("{outcome}");
                if let ReloadOutcome::Loaded { .. } = outcome {
                    let _ = changed.send(());
                }
            })?),
            None => None,
        };
        let peer = running.peer().clone();
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                let _ = peer.notify_tool_list_changed().await;
            }
        });
        running.waiting().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    for record in host.shutdown() {
        eprintln!(
            "{}: {:?} in {:.2} ms",
            record.id,
            record.outcome,
            record.elapsed.as_secs_f64() * 1e3
        );
    }
    served
}

//! `airlock mcp`: the loaded plugins' actions as the tools of a Model Context Protocol server
//! over standard input and output (the official SDK, `rmcp`). A tool call is a call through
//! the whole membrane — permissions, grants, audit — on behalf of the MCP client (principal
//! `mcp:<client name>`, role `mcp`); what the action emits reaches the client as progress
//! notifications, the client's cancellation cancels the call, a `CallError` is a tool error
//! carrying its stable code, and a hot reload tells the client the tool list changed.
//!
//! A tool is `<plugin>__<action>` (a name two actions would share, or one over 128
//! characters, is not offered). An action whose input schema is an object, or that declares no
//! schema, takes the tool's arguments as its input (a schema-less tool is offered as any
//! object, and no arguments, or `{}`, is the input `null`); any other takes them under `input`, and an argument
//! beside `input` is refused, never dropped. Actions that serve HTTP routes
//! are not tools. Standard output carries the protocol alone: [`protocol_output`] sets it aside
//! before any plugin is loaded, and the process's standard output (a plugin that prints, a
//! worker) goes to standard error.

use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock::plugins::{PluginState, ReloadOutcome};
use airlock::{CancelToken, Host, PluginInfo};
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

mod input;
mod output;

use input::{takes_object, Arguments};
use output::{chunk_text, result};

/// How many chunks of a call may wait to be sent as progress before the plugin waits.
const PROGRESS_BUFFER: usize = 16;

/// The MCP server: the host and who the client said it is.
#[derive(Clone)]
struct Server {
    host: Arc<Host>,
    client: Arc<Mutex<Option<String>>>,
}

/// One tool: which action it calls, and how its arguments carry the input.
struct Target {
    plugin: String,
    action: String,
    arguments: Arguments,
}

/// The tool's name for an action.
fn tool_name(plugin: &str, action: &str) -> String {
    format!("{plugin}__{action}")
}

/// The longest tool name MCP allows.
const MAX_TOOL_NAME: usize = 128;

/// The actions of running plugins that are tools (not route handlers), with their tool name
/// and plugin. A name two actions would share (`a` + `b__c`, `a__b` + `c`) or one too long is
/// left out, with a warning: a call must never reach another action than the one it names.
fn actions(host: &Host, warn: bool) -> Vec<(String, PluginInfo, ActionDecl)> {
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
                let name = tool_name(&plugin.id, &action.name);
                tools.push((name, plugin.clone(), action.clone()));
            }
        }
    }
    let mut names: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for (name, ..) in &tools {
        *names.entry(name.clone()).or_default() += 1;
    }
    tools.retain(|(name, plugin, action)| {
        let offered = names.get(name) == Some(&1) && name.len() <= MAX_TOOL_NAME;
        if !offered && warn {
            tracing::warn!(
                "{}.{} is not offered as a tool: its name {name:?} is shared or too long",
                plugin.id,
                action.name
            );
        }
        offered
    });
    tools
}

fn tool(name: &str, plugin: &PluginInfo, action: &ActionDecl) -> Tool {
    let schema = match &action.input_schema {
        Some(Value::Object(schema)) if takes_object(action.input_schema.as_ref()) => schema.clone(),
        None => json!({
            "type": "object",
            "description": format!(
                "The input of {}.{}: the arguments as given (it declares no schema)",
                plugin.id, action.name
            ),
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
        other => {
            // The input under "input"; the definitions its references name stay at the root.
            let mut input = match other.clone() {
                Some(Value::Object(input)) => input,
                Some(other) => [("allOf".to_owned(), json!([other]))].into_iter().collect(),
                None => JsonObject::new(),
            };
            let mut wrapper = JsonObject::new();
            for key in ["$schema", "$defs", "definitions"] {
                if let Some(value) = input.remove(key) {
                    wrapper.insert(key.to_owned(), value);
                }
            }
            wrapper.insert("type".to_owned(), json!("object"));
            wrapper.insert("properties".to_owned(), json!({ "input": input }));
            wrapper.insert(
                "description".to_owned(),
                json!(format!(
                    "The input of {}.{}, under \"input\"",
                    plugin.id, action.name
                )),
            );
            wrapper
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
    Tool::new(name.to_owned(), description, Arc::new(schema)).with_annotations(annotations)
}

impl Server {
    fn target(&self, name: &str) -> Option<Target> {
        actions(&self.host, false)
            .into_iter()
            .find(|(tool, ..)| tool == name)
            .map(|(_, plugin, action)| Target {
                arguments: Arguments::of(&action),
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
        let tools = actions(&self.host, true)
            .iter()
            .map(|(name, plugin, action)| tool(name, plugin, action))
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
        let input = target
            .arguments
            .input(request.arguments)
            .map_err(|refused| ErrorData::invalid_params(refused, None))?;
        let progress = context.meta.get_progress_token();
        let token = CancelToken::new();
        let (chunks, mut taken) = tokio::sync::mpsc::channel::<String>(PROGRESS_BUFFER);
        let mut call = {
            let (host, principal, token) = (self.host.clone(), self.principal(), token.clone());
            let streamed = progress.is_some();
            tokio::task::spawn_blocking(move || {
                let (plugin, action) = (&target.plugin, &target.action);
                let call = host
                    .call(plugin, action)
                    .as_principal(&principal)
                    .cancel_on(&token);
                if streamed {
                    // The plugin waits while the client is behind (a bounded buffer).
                    call.on_chunk(|chunk| {
                        // The request was cancelled and nobody takes progress any more.
                        if chunks.blocking_send(chunk_text(&chunk)).is_err() {
                            token.cancel();
                        }
                    })
                    .json(&input)
                } else {
                    call.json(&input)
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
                    // Nothing waits for progress now: a chunk still being handed over is dropped.
                    drop(taken);
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

/// Sets the process's standard output aside for the protocol, before any plugin is loaded:
/// answers a descriptor for it (closed on exec, so no worker inherits it) and makes standard
/// output a copy of standard error, where whatever else is printed goes.
///
/// # Errors
///
/// The descriptors cannot be duplicated.
pub fn protocol_output() -> std::io::Result<File> {
    let protocol = rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)?;
    rustix::stdio::dup2_stdout(std::io::stderr())?;
    Ok(File::from(protocol))
}

/// Serves `host`'s plugins over MCP, reading standard input and writing `protocol` (from
/// [`protocol_output`]), until the client closes its end or a plugin asks the host to shut down
/// (`shutdown` is notified: the program's handler of that request). The client is told when the tools
/// change: with `watch`, rebuilt libraries are reloaded at once; a plugin disabled, quarantined
/// or back is seen within half a second.
///
/// # Errors
///
/// The runtime cannot start, the directories cannot be watched, or the client's handshake
/// fails.
pub fn serve(
    host: Host,
    protocol: File,
    watch: Option<Duration>,
    shutdown: Arc<tokio::sync::Notify>,
) -> Result<(), Box<dyn std::error::Error>> {
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
        // A plugin's shutdown request ends the service as the client's leaving would.
        let service = running.cancellation_token();
        tokio::spawn(async move {
            shutdown.notified().await;
            service.cancel();
        });
        let peer = running.peer().clone();
        let watched = host.clone();
        tokio::spawn(async move {
            // The tool names offered; a reload, or a look every half second, that finds them
            // changed tells the client.
            let names = |host: &Host| -> Vec<String> {
                actions(host, false)
                    .into_iter()
                    .map(|(name, ..)| name)
                    .collect()
            };
            let mut offered = names(&watched);
            loop {
                tokio::select! {
                    changed = changes.recv() => if changed.is_none() { break },
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                let now = names(&watched);
                if now != offered {
                    offered = now;
                    let _ = peer.notify_tool_list_changed().await;
                }
            }
        });
        running.waiting().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(request) = host.shutdown_requested() {
        eprintln!("shutting down: {request}");
    }
    crate::commands::shut_down(&host);
    served
}

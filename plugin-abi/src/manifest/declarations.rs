//! What a manifest declares besides capabilities: whether calls may overlap, the actions, the
//! hooks, the kinds of request the plugin claims, its HTTP routes and its timer jobs.

use serde::{Deserialize, Serialize};

use super::routes::RouteAuth;

/// Whether the host may call a plugin from several threads at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// The host serializes every call into the plugin.
    #[default]
    Serial,
    /// The plugin is safe to call from several threads at once.
    Parallel,
}

/// One action as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDecl {
    /// The action's name, unique within the plugin.
    pub name: String,
    /// What the action does, shown in listings.
    #[serde(default)]
    pub description: String,
    /// A short human title (an MCP client shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The JSON Schema its input must match: the host refuses an input that does not
    /// (`bad_input`) before the plugin sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<serde_json::Value>,
    /// The JSON Schema of its answer (published, not enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// A hint for callers: it changes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// A hint for callers: it may destroy or overwrite something.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destructive: bool,
    /// A hint for callers: calling it twice with the same input does no more than once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// One hook as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookDecl {
    /// The host-defined hook point, e.g. `input.transform`.
    pub name: String,
    /// What the plugin does there.
    #[serde(default)]
    pub description: String,
}

/// A kind of request the plugin claims to be the one handler of (`"notify.email"`): the host
/// refuses a second plugin claiming the same kind (`claim_conflict`), and
/// `host.dispatch(kind).json(..)` reaches the holder's `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimDecl {
    /// The kind of request, e.g. `notify.email`.
    pub kind: String,
    /// The declared action that handles it.
    pub action: String,
}

/// An HTTP route the plugin serves under its own prefix (`/plugins/<id><path>`): requests the
/// embedding program receives and hands to `host.handle_http(..)` (or `airlock run --listen`)
/// after its authentication — or, for a route with `auth` public, after checking the request's
/// signature instead. A route with an `action` is served by it (registered with
/// `Actions::add_route`); one without is declared and not handled yet (`501`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDecl {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The path under the plugin's prefix, starting with `/` (`/webhook`): exact segments,
    /// parameters (`/items/{id}`) and a trailing wildcard (`/files/{*rest}`); see
    /// [`RoutePattern`](super::RoutePattern).
    pub path: String,
    /// The declared action that serves it, if any.
    #[serde(default)]
    pub action: Option<String>,
    /// What it is for, shown in listings.
    #[serde(default)]
    pub description: String,
    /// Who may call it: the program's authentication (default), or a signed public route.
    #[serde(default, skip_serializing_if = "RouteAuth::is_host")]
    pub auth: RouteAuth,
}

/// A timer job the host schedules for the plugin once it is created (capability `timers`):
/// `Plugin::on_job` runs on a cron schedule (5 fields, UTC) or at an interval, as if the plugin
/// had registered it in `create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDecl {
    /// The job's name, unique within the plugin.
    pub name: String,
    /// A 5-field cron expression (minute, hour, day of month, month, day of week), in UTC.
    #[serde(default)]
    pub cron: Option<String>,
    /// Or: the gap between runs, in milliseconds.
    #[serde(default)]
    pub every_ms: Option<u64>,
}

/// The methods a route may declare.
pub const ROUTE_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

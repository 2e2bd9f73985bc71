//! The plugin manifest (`plugin.json`): parsed with serde into [`RawManifest`], then validated
//! into [`Manifest`] by one `TryFrom`. Code that holds a `Manifest` never re-checks it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest plugin id accepted.
pub const MAX_ID_LEN: usize = 64;

/// A plugin id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter.
///
/// Ids name policy entries, audit records and key/value namespaces, so they never contain path
/// separators, upper case or anything a shell or a file system would treat specially.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PluginId(String);

impl PluginId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    ///
    /// A message saying which rule the id breaks.
    pub fn new(id: &str) -> Result<Self, String> {
        if id.is_empty() {
            return Err("the plugin id is empty".to_owned());
        }
        if id.len() > MAX_ID_LEN {
            return Err(format!(
                "the plugin id is {} characters long; at most {MAX_ID_LEN} are allowed",
                id.len()
            ));
        }
        if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "the plugin id {id:?} must start with a lower-case letter"
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "the plugin id {id:?} contains {bad:?}; use only a-z, 0-9, '-' and '_'"
            ));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PluginId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The services a capability can open. Logging and reading the plugin's own config need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CapabilityKind {
    /// The plugin's own key/value namespace.
    Kv,
    /// Publishing events on topics matching the scope (a glob).
    EventsPublish,
    /// Subscribing to topics matching the scope (a glob).
    EventsSubscribe,
    /// Interval jobs run by the host.
    Timers,
    /// Reading the operator-provided secret named by the scope.
    Secrets,
    /// Calling actions of the plugin named by the scope.
    PluginsCall,
    /// Operating the host itself (revoking, disabling, reading the audit log). Reserved to the
    /// host program's own code: never granted to a library.
    HostControl,
    /// Calling operations of a service the embedding program offers; the scope is
    /// `<service>.<operation>` (a glob: `editor.*`).
    Service,
    /// Outbound HTTP to the hosts matching the scope (a glob: `api.example.com`,
    /// `*.example.com`); the operator's policy also decides schemes, addresses and limits.
    HttpOutbound,
}

impl CapabilityKind {
    /// Every kind, in a stable order (tests iterate over it).
    pub const ALL: [Self; 9] = [
        Self::Kv,
        Self::EventsPublish,
        Self::EventsSubscribe,
        Self::Timers,
        Self::Secrets,
        Self::PluginsCall,
        Self::HostControl,
        Self::Service,
        Self::HttpOutbound,
    ];

    /// The name used in manifests and policies.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kv => "kv",
            Self::EventsPublish => "events.publish",
            Self::EventsSubscribe => "events.subscribe",
            Self::Timers => "timers",
            Self::Secrets => "secrets",
            Self::PluginsCall => "plugins.call",
            Self::HostControl => "host.control",
            Self::Service => "service",
            Self::HttpOutbound => "http.outbound",
        }
    }

    /// Whether the capability is reserved to the host's own code: a library may not declare
    /// it and a policy may not grant it.
    pub const fn is_reserved(self) -> bool {
        matches!(self, Self::HostControl)
    }

    /// Whether the capability must carry a `:scope`.
    pub const fn is_scoped(self) -> bool {
        matches!(
            self,
            Self::EventsPublish
                | Self::EventsSubscribe
                | Self::Secrets
                | Self::PluginsCall
                | Self::Service
                | Self::HttpOutbound
        )
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A capability: a kind and, for scoped kinds, a scope (`events.publish:ticks.*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability {
    kind: CapabilityKind,
    scope: Option<String>,
}

impl Capability {
    /// Parses `kind` or `kind:scope`.
    ///
    /// # Errors
    ///
    /// A message naming the unknown kind, the missing scope or the unexpected one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, scope) = match text.split_once(':') {
            Some((name, scope)) => (name, Some(scope)),
            None => (text, None),
        };
        let kind = CapabilityKind::from_name(name).ok_or_else(|| {
            let known: Vec<_> = CapabilityKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown capability {name:?}; known capabilities are {}",
                known.join(", ")
            )
        })?;
        match (kind.is_scoped(), scope) {
            (true, None) | (true, Some("")) => Err(format!(
                "capability {name:?} needs a scope, as in \"{name}:<name or glob>\""
            )),
            (false, Some(_)) => Err(format!("capability {name:?} takes no scope")),
            (_, scope) => {
                if let Some(s) = scope {
                    if s.len() > 256 || s.chars().any(char::is_control) {
                        return Err(format!(
                            "the scope of capability {name:?} must be at most 256 printable characters"
                        ));
                    }
                }
                Ok(Self {
                    kind,
                    scope: scope.map(str::to_owned),
                })
            }
        }
    }

    /// The kind of service.
    pub fn kind(&self) -> CapabilityKind {
        self.kind
    }

    /// The scope, for scoped kinds.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Some(scope) => write!(f, "{}:{scope}", self.kind.name()),
            None => f.write_str(self.kind.name()),
        }
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

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

/// One capability as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeclaredCapability {
    /// What the plugin asks for.
    pub capability: Capability,
    /// If true, the plugin is refused (`not_granted`) unless the operator grants it.
    pub required: bool,
    /// Why the plugin needs it, shown to operators.
    pub reason: Option<String>,
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
/// refuses a second plugin claiming the same kind (`claim_conflict`), and `host.dispatch(kind,
/// ..)` reaches the holder's `action`.
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
/// after its authentication. A route with an `action` is served by it (registered with
/// `Actions::add_route`); one without is declared and not handled yet (`501`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDecl {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The path under the plugin's prefix, starting with `/` (`/webhook`).
    pub path: String,
    /// The declared action that serves it, if any.
    #[serde(default)]
    pub action: Option<String>,
    /// What it is for, shown in listings.
    #[serde(default)]
    pub description: String,
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

fn check_routes(routes: &[RouteDecl], actions: &[ActionDecl]) -> Result<(), ManifestError> {
    let mut seen = std::collections::BTreeSet::new();
    for route in routes {
        let name = format!("route {} {}", route.method, route.path);
        if !ROUTE_METHODS.contains(&route.method.as_str()) {
            return Err(ManifestError(format!(
                "{name}: the method must be one of {}",
                ROUTE_METHODS.join(", ")
            )));
        }
        let path_ok = route.path.starts_with('/')
            && route.path.len() <= 256
            && !route.path.split('/').any(|s| s == ".." || s == ".")
            && route
                .path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
        if !path_ok {
            return Err(ManifestError(format!(
                "{name}: the path must start with / and hold at most 256 of a-z A-Z 0-9 / - _ . ~, \
                 with no . or .. segment"
            )));
        }
        if !seen.insert((route.method.as_str(), route.path.as_str())) {
            return Err(ManifestError(format!("{name} is declared twice")));
        }
        if let Some(action) = &route.action {
            let Some(declared) = actions.iter().find(|a| &a.name == action) else {
                return Err(ManifestError(format!(
                    "{name} names action {action:?}, which the manifest does not declare"
                )));
            };
            if declared.input_schema.is_some() {
                return Err(ManifestError(format!(
                    "{name}: action {action:?} serves a route, so it takes a request, not JSON: \
                     it cannot have an input_schema"
                )));
            }
        }
    }
    Ok(())
}

/// `plugin.json` as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    /// See [`Manifest::id`].
    pub id: String,
    /// See [`Manifest::version`].
    pub version: String,
    /// See [`Manifest::description`].
    #[serde(default)]
    pub description: String,
    /// See [`Manifest::capabilities`].
    #[serde(default)]
    pub capabilities: Vec<RawCapability>,
    /// See [`Manifest::hooks`].
    #[serde(default)]
    pub hooks: Vec<HookDecl>,
    /// See [`Manifest::actions`].
    #[serde(default)]
    pub actions: Vec<ActionDecl>,
    /// See [`Manifest::concurrency`].
    #[serde(default)]
    pub concurrency: Concurrency,
    /// See [`Manifest::claims`].
    #[serde(default)]
    pub claims: Vec<ClaimDecl>,
    /// See [`Manifest::routes`].
    #[serde(default)]
    pub routes: Vec<RouteDecl>,
    /// See [`Manifest::jobs`].
    #[serde(default)]
    pub jobs: Vec<JobDecl>,
    /// The JSON Schema the plugin's config must match (checked in stage 3, before it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
}

/// A capability entry as written: `"kv"` or `{"name": "kv", "required": true, "reason": "…"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawCapability {
    /// Just the name; optional.
    Name(String),
    /// The long form.
    Detailed {
        /// The capability, `kind` or `kind:scope`.
        name: String,
        /// Refuse the plugin unless granted.
        #[serde(default)]
        required: bool,
        /// Why the plugin needs it.
        #[serde(default)]
        reason: Option<String>,
    },
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// The plugin's id.
    pub id: PluginId,
    /// The plugin's own version (semver).
    pub version: semver::Version,
    /// One line for listings.
    pub description: String,
    /// Capabilities the plugin may ask the operator for.
    pub capabilities: Vec<DeclaredCapability>,
    /// Hook points the plugin implements.
    pub hooks: Vec<HookDecl>,
    /// Actions the plugin offers, in declaration order (the order is the action's index).
    pub actions: Vec<ActionDecl>,
    /// Whether calls may overlap.
    pub concurrency: Concurrency,
    /// Kinds of request the plugin claims to be the one handler of.
    pub claims: Vec<ClaimDecl>,
    /// HTTP routes it serves under its prefix.
    pub routes: Vec<RouteDecl>,
    /// Timer jobs the host schedules for it once it is created.
    pub jobs: Vec<JobDecl>,
    /// The JSON Schema the plugin's config must match (checked in stage 3, before it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
}

/// Why a manifest is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ManifestError {}

/// The most hooks, actions or capabilities one manifest may declare.
pub const MAX_DECLARATIONS: usize = 256;

impl TryFrom<RawManifest> for Manifest {
    type Error = ManifestError;

    fn try_from(raw: RawManifest) -> Result<Self, ManifestError> {
        let err = |msg: String| ManifestError(msg);
        let id = PluginId::new(&raw.id).map_err(err)?;
        let version = semver::Version::parse(&raw.version)
            .map_err(|e| err(format!("version {:?} is not semver: {e}", raw.version)))?;
        for (what, n) in [
            ("capabilities", raw.capabilities.len()),
            ("hooks", raw.hooks.len()),
            ("actions", raw.actions.len()),
            ("claims", raw.claims.len()),
            ("routes", raw.routes.len()),
            ("jobs", raw.jobs.len()),
        ] {
            if n > MAX_DECLARATIONS {
                return Err(err(format!(
                    "{n} {what} declared; at most {MAX_DECLARATIONS} are allowed"
                )));
            }
        }
        let mut capabilities: Vec<DeclaredCapability> = Vec::new();
        for raw_cap in raw.capabilities {
            let (name, required, reason) = match raw_cap {
                RawCapability::Name(name) => (name, false, None),
                RawCapability::Detailed {
                    name,
                    required,
                    reason,
                } => (name, required, reason),
            };
            let capability = Capability::parse(&name).map_err(err)?;
            if capability.kind().is_reserved() {
                return Err(err(format!(
                    "capability {capability} is reserved to the host's own code; a plugin cannot declare it"
                )));
            }
            if capabilities.iter().any(|c| c.capability == capability) {
                return Err(err(format!("capability {capability} is declared twice")));
            }
            capabilities.push(DeclaredCapability {
                capability,
                required,
                reason,
            });
        }
        check_names("action", raw.actions.iter().map(|a| a.name.as_str()))?;
        check_names("hook", raw.hooks.iter().map(|h| h.name.as_str()))?;
        check_names("claim", raw.claims.iter().map(|c| c.kind.as_str()))?;
        if let Some(claim) = raw
            .claims
            .iter()
            .find(|c| !raw.actions.iter().any(|a| a.name == c.action))
        {
            return Err(err(format!(
                "claim {:?} names action {:?}, which the manifest does not declare",
                claim.kind, claim.action
            )));
        }
        check_routes(&raw.routes, &raw.actions)?;
        for (what, schema) in raw
            .actions
            .iter()
            .flat_map(|a| {
                [
                    ("input_schema", &a.input_schema),
                    ("output_schema", &a.output_schema),
                ]
                .map(|(kind, s)| (format!("action {:?}'s {kind}", a.name), s))
            })
            .chain([("config_schema".to_owned(), &raw.config_schema)])
        {
            if let Some(s) = schema {
                if !(s.is_object() || s.is_boolean()) {
                    return Err(err(format!(
                        "{what} must be a JSON Schema: an object (or true/false)"
                    )));
                }
            }
        }
        check_names("job", raw.jobs.iter().map(|j| j.name.as_str()))?;
        if let Some(job) = raw
            .jobs
            .iter()
            .find(|j| j.cron.is_some() == j.every_ms.is_some())
        {
            return Err(err(format!(
                "job {:?} needs one of cron or every_ms",
                job.name
            )));
        }
        if !raw.jobs.is_empty()
            && !capabilities
                .iter()
                .any(|c| c.capability.kind() == CapabilityKind::Timers)
        {
            return Err(err(
                "jobs are declared, so the timers capability must be too".to_owned(),
            ));
        }
        Ok(Self {
            id,
            version,
            description: raw.description,
            capabilities,
            hooks: raw.hooks,
            actions: raw.actions,
            concurrency: raw.concurrency,
            claims: raw.claims,
            routes: raw.routes,
            jobs: raw.jobs,
            config_schema: raw.config_schema,
        })
    }
}

fn check_names<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), ManifestError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ManifestError(format!(
                "{what} name {name:?} must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' and '.'"
            )));
        }
        if !seen.insert(name) {
            return Err(ManifestError(format!("{what} {name:?} is declared twice")));
        }
    }
    Ok(())
}

impl Manifest {
    /// Parses and validates `plugin.json` text.
    ///
    /// # Errors
    ///
    /// The JSON error (with line and column) or the rule the manifest breaks.
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            serde_json::from_str(text).map_err(|e| ManifestError(format!("plugin.json: {e}")))?;
        Self::try_from(raw)
    }

    /// The index of an action by name.
    pub fn action_index(&self, name: &str) -> Option<usize> {
        self.actions.iter().position(|a| a.name == name)
    }
}

/// Whether `grants` allow using `kind` on `scope` (`None` for unscoped kinds): a grant of the
/// same kind whose scope glob matches the requested scope.
pub fn covers(grants: &[Capability], kind: CapabilityKind, scope: Option<&str>) -> bool {
    grants.iter().any(|g| {
        g.kind() == kind
            && match (g.scope(), scope) {
                (None, None) => true,
                (Some(pattern), Some(scope)) => glob_match(pattern, scope),
                _ => false,
            }
    })
}

/// Matches `text` against `pattern`, where `*` matches any run of characters (including none).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let m = Manifest::from_json(
            r#"{"id":"hello","version":"1.2.3","description":"greets",
                "capabilities":["kv",{"name":"events.publish:ticks.*","required":true,"reason":"r"}],
                "hooks":[{"name":"input.transform"}],
                "actions":[{"name":"greet","description":"says hi"}],
                "concurrency":"parallel"}"#,
        )
        .expect("valid");
        assert_eq!(m.id.as_str(), "hello");
        assert_eq!(m.concurrency, Concurrency::Parallel);
        assert_eq!(m.capabilities[1].capability.scope(), Some("ticks.*"));
        assert!(m.capabilities[1].required);
        assert_eq!(m.action_index("greet"), Some(0));
    }

    #[test]
    fn routes_and_jobs_are_checked() {
        let with = |extra: &str| {
            Manifest::from_json(&format!(
                r#"{{"id":"p","version":"1.0.0","capabilities":["timers"],
                    "actions":[{{"name":"hook"}}]{extra}}}"#
            ))
        };
        let ok = with(
            r#","routes":[{"method":"POST","path":"/hook","action":"hook"},{"method":"GET","path":"/later"}],
               "jobs":[{"name":"nightly","cron":"0 3 * * *"},{"name":"beat","every_ms":500}]"#,
        )
        .expect("valid");
        assert_eq!(ok.routes.len(), 2);
        assert_eq!(ok.jobs[1].every_ms, Some(500));
        for (bad, says) in [
            (r#","routes":[{"method":"TRACE","path":"/x"}]"#, "method"),
            (r#","routes":[{"method":"GET","path":"x"}]"#, "path"),
            (r#","routes":[{"method":"GET","path":"/a/../b"}]"#, "path"),
            (
                r#","routes":[{"method":"GET","path":"/x"},{"method":"GET","path":"/x"}]"#,
                "twice",
            ),
            (
                r#","routes":[{"method":"GET","path":"/x","action":"nope"}]"#,
                "does not declare",
            ),
            (r#","jobs":[{"name":"j"}]"#, "one of cron or every_ms"),
            (
                r#","jobs":[{"name":"j","cron":"* * * * *","every_ms":5}]"#,
                "one of cron",
            ),
        ] {
            let err = with(bad).expect_err(bad);
            assert!(err.0.contains(says), "{bad}: {err}");
        }
        let schema_on_route = Manifest::from_json(
            r#"{"id":"p","version":"1.0.0","actions":[{"name":"hook","input_schema":{"type":"object"}}],
                "routes":[{"method":"POST","path":"/hook","action":"hook"}]}"#,
        )
        .expect_err("a route action takes a request");
        assert!(
            schema_on_route.0.contains("input_schema"),
            "{schema_on_route}"
        );
        let not_a_schema = Manifest::from_json(
            r#"{"id":"p","version":"1.0.0","actions":[{"name":"a","input_schema":"integer"}]}"#,
        )
        .expect_err("a schema is an object");
        assert!(
            not_a_schema.0.contains("must be a JSON Schema"),
            "{not_a_schema}"
        );
        let no_timers = Manifest::from_json(
            r#"{"id":"p","version":"1.0.0","jobs":[{"name":"j","every_ms":5}]}"#,
        )
        .expect_err("jobs without timers");
        assert!(no_timers.0.contains("timers capability"), "{no_timers}");
    }

    #[test]
    fn rejects_bad_ids() {
        for id in [
            "",
            "Hello",
            "a/b",
            "../x",
            "1abc",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(PluginId::new(id).is_err(), "{id:?} should be refused");
        }
        for id in ["a", "hello-world", "x_1", &"a".repeat(64)] {
            assert!(PluginId::new(id).is_ok(), "{id:?} should be accepted");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_bad_versions() {
        let unknown = Manifest::from_json(r#"{"id":"a","version":"1.0.0","colour":"red"}"#);
        assert!(unknown
            .expect_err("refused")
            .0
            .contains("unknown field `colour`"));
        let semver = Manifest::from_json(r#"{"id":"a","version":"one"}"#);
        assert!(semver.expect_err("refused").0.contains("not semver"));
    }

    #[test]
    fn capability_rules() {
        assert!(Capability::parse("kv").is_ok());
        assert!(Capability::parse("kv:x").is_err());
        assert!(Capability::parse("secrets").is_err());
        assert!(Capability::parse("secrets:").is_err());
        assert!(Capability::parse("teleport").is_err());
        let c = Capability::parse("plugins.call:hello").expect("valid");
        assert_eq!(c.to_string(), "plugins.call:hello");
    }

    #[test]
    fn duplicate_declarations_are_refused() {
        let dup = Manifest::from_json(
            r#"{"id":"a","version":"1.0.0","actions":[{"name":"x"},{"name":"x"}]}"#,
        );
        assert!(dup.expect_err("refused").0.contains("declared twice"));
    }
}

//! A mock host for a plugin's own unit tests (feature `testing`): creates the plugin in-process
//! with chosen grants and config, calls its actions and hooks, fires its events and timers
//! deterministically, and shows what it logged, stored and published — without building a
//! library or loading anything.
//!
//! ```
//! use airlock_abi::testing::MockHost;
//! use airlock_abi::{ActionError, Actions, Context, InitError, Plugin};
//!
//! struct Counter { ctx: Context }
//!
//! impl Plugin for Counter {
//!     fn create(ctx: Context) -> Result<Self, InitError> { Ok(Self { ctx }) }
//!     fn actions(actions: &mut Actions<Self>) {
//!         actions.add("bump", |this: &Self, (): ()| {
//!             let n = this.ctx.kv().get::<u64>("n")?.unwrap_or(0) + 1;
//!             this.ctx.kv().set("n", &n)?;
//!             Ok::<_, ActionError>(n)
//!         });
//!     }
//! }
//!
//! let manifest = r#"{"id": "counter", "version": "0.1.0",
//!                    "capabilities": ["kv"], "actions": [{"name": "bump"}]}"#;
//! let mock = MockHost::new(manifest).expect("valid manifest").create::<Counter>().expect("created");
//! assert_eq!(mock.call::<_, u64>("bump", &()).expect("called"), Ok(1));
//! assert_eq!(mock.kv()["n"], 1);
//! mock.teardown().expect("nothing left behind");
//! ```
//!
//! By default the mock grants every capability the manifest declares; [`MockHost::grants`]
//! narrows that to test the denied paths. A capability used without being declared is always
//! denied and reported by [`Mocked::teardown`], as are timers and subscriptions the plugin left
//! behind.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::export::panic_message;
use crate::ffi::{
    ContextToken, ErrorCode, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef,
    LogLevel, PluginError,
};
use crate::manifest::{covers, glob_match, Capability, CapabilityKind, Manifest, ManifestError};
use crate::plugin::{
    Actions, ConfigChange, Context, Handler, Health, HookReply, Hooks, InitError, Level, Plugin,
};
use crate::wire::{self, CallErrorCode, ConfigReport, Request};

/// Configures a mock host for one plugin.
#[derive(Debug, Clone)]
pub struct MockHost {
    manifest: Manifest,
    grants: Vec<Capability>,
    config: Value,
    secrets: BTreeMap<String, String>,
    answers: BTreeMap<(String, String), Result<Value, String>>,
}

/// Why a mock call failed (not the action's own domain error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockError {
    /// No such action or hook is registered.
    NotFound(String),
    /// The plugin panicked; the message is the payload.
    Panicked(String),
    /// Another failure, with the plugin's error code name.
    Failed {
        /// `bad_input`, `handler_error`, `capability_violation`, `revoked`…
        code: &'static str,
        /// Detail.
        message: String,
    },
    /// The value could not be encoded or the answer decoded.
    Codec(String),
}

impl fmt::Display for MockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(what) => write!(f, "not found: {what}"),
            Self::Panicked(m) => write!(f, "panicked: {m}"),
            Self::Failed { code, message } => write!(f, "{code}: {message}"),
            Self::Codec(m) => write!(f, "codec: {m}"),
        }
    }
}

impl std::error::Error for MockError {}

/// What a plugin left behind or did wrong, found at [`Mocked::teardown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaks {
    /// Timer jobs still scheduled.
    pub timers: Vec<String>,
    /// Subscriptions still held.
    pub subscriptions: Vec<String>,
    /// Capabilities used that the manifest does not declare.
    pub undeclared: Vec<String>,
    /// The panic of `teardown`, if it panicked.
    pub panicked: Option<String>,
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the plugin left behind timers {:?} and subscriptions {:?}, used undeclared capabilities {:?}",
            self.timers, self.subscriptions, self.undeclared
        )?;
        if let Some(p) = &self.panicked {
            write!(f, ", and panicked in teardown: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Leaks {}

impl MockHost {
    /// A mock host for the plugin whose `plugin.json` this is; it grants every declared
    /// capability and gives an empty config.
    ///
    /// # Errors
    ///
    /// The manifest's problem.
    pub fn new(plugin_json: &str) -> Result<Self, ManifestError> {
        let manifest = Manifest::from_json(plugin_json)?;
        let grants = manifest
            .capabilities
            .iter()
            .map(|c| c.capability.clone())
            .collect();
        Ok(Self {
            manifest,
            grants,
            config: Value::Object(serde_json::Map::new()),
            secrets: BTreeMap::new(),
            answers: BTreeMap::new(),
        })
    }

    /// Grants exactly these capabilities (as an operator's policy would).
    ///
    /// # Panics
    ///
    /// If a capability does not parse.
    #[must_use]
    pub fn grants(mut self, grants: &[&str]) -> Self {
        self.grants = grants
            .iter()
            .map(|g| Capability::parse(g).unwrap_or_else(|e| panic!("grant {g:?}: {e}")))
            .collect();
        self
    }

    /// The plugin's config.
    #[must_use]
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Provides a secret.
    #[must_use]
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// What a call to another plugin's action answers (`Ok(data)` or a domain `Err`).
    #[must_use]
    pub fn answer(mut self, plugin: &str, action: &str, result: Result<Value, String>) -> Self {
        self.answers
            .insert((plugin.to_owned(), action.to_owned()), result);
        self
    }

    /// Validates the config with the plugin's `validate_config`, then creates it.
    ///
    /// # Errors
    ///
    /// The config's errors, or the plugin's own `InitError` (a panic becomes one).
    pub fn create<P: Plugin>(self) -> Result<Mocked<P>, InitError> {
        self.create_with_handover(None)
    }

    fn create_with_handover<P: Plugin>(
        self,
        handover: Option<Vec<u8>>,
    ) -> Result<Mocked<P>, InitError> {
        let report = P::validate_config(&self.config);
        if !report.is_ok() {
            return Err(InitError::new(format!(
                "config rejected: {}",
                report.errors.join("; ")
            )));
        }
        let mut actions = Actions::new();
        P::actions(&mut actions);
        let mut hooks = Hooks::new();
        P::hooks(&mut hooks);
        check_registered(
            "action",
            self.manifest.actions.iter().map(|a| &a.name),
            &actions.handlers,
        )?;
        check_registered(
            "hook",
            self.manifest.hooks.iter().map(|h| &h.name),
            &hooks.handlers,
        )?;
        let state = Arc::new(Mutex::new(MockState::new(self, report, handover)));
        let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        lock(&REGISTRY).insert(slot, state.clone());
        let context = Context::from_raw(HostContext {
            token: ContextToken {
                slot,
                generation: 1,
            },
            vtable: HostVtableRef(VTABLE.static_as_prefix()),
        });
        let plugin = match catch_unwind(AssertUnwindSafe(|| P::create(context))) {
            Ok(Ok(plugin)) => plugin,
            Ok(Err(e)) => {
                lock(&REGISTRY).remove(&slot);
                return Err(e);
            }
            Err(payload) => {
                lock(&REGISTRY).remove(&slot);
                return Err(InitError::new(format!(
                    "create panicked: {}",
                    panic_message(payload)
                )));
            }
        };
        Ok(Mocked {
            plugin: Some(plugin),
            actions: actions.handlers,
            hooks: hooks.handlers,
            state,
            slot,
        })
    }
}

fn check_registered<'a, P>(
    what: &str,
    declared: impl Iterator<Item = &'a String>,
    registered: &[(String, Handler<P>)],
) -> Result<(), InitError> {
    let declared: Vec<&String> = declared.collect();
    for name in &declared {
        if !registered.iter().any(|(n, _)| n == *name) {
            return Err(InitError::new(format!(
                "{what} {name:?} is declared but has no handler"
            )));
        }
    }
    for (name, _) in registered {
        if !declared.contains(&name) {
            return Err(InitError::new(format!(
                "{what} {name:?} has a handler but is not declared"
            )));
        }
    }
    Ok(())
}

struct MockState {
    host: MockHost,
    warnings: Vec<String>,
    logs: Vec<(Level, String)>,
    kv: BTreeMap<String, Value>,
    published: Vec<(String, Value)>,
    subscriptions: Vec<String>,
    timers: BTreeMap<String, Duration>,
    denials: Vec<String>,
    undeclared: Vec<String>,
    handover: Option<Vec<u8>>,
    revoked: bool,
}

impl MockState {
    fn new(host: MockHost, report: ConfigReport, handover: Option<Vec<u8>>) -> Self {
        Self {
            host,
            warnings: report.warnings,
            logs: Vec::new(),
            kv: BTreeMap::new(),
            published: Vec::new(),
            subscriptions: Vec::new(),
            timers: BTreeMap::new(),
            denials: Vec::new(),
            undeclared: Vec::new(),
            handover,
            revoked: false,
        }
    }

    fn require(&mut self, kind: CapabilityKind, scope: Option<&str>) -> Result<(), HostError> {
        if covers(&self.host.grants, kind, scope) {
            let declared: Vec<Capability> = self
                .host
                .manifest
                .capabilities
                .iter()
                .map(|c| c.capability.clone())
                .collect();
            if covers(&declared, kind, scope) {
                return Ok(());
            }
        }
        let capability = scope.map_or_else(
            || kind.name().to_owned(),
            |s| format!("{}:{s}", kind.name()),
        );
        let declared: Vec<Capability> = self
            .host
            .manifest
            .capabilities
            .iter()
            .map(|c| c.capability.clone())
            .collect();
        if !covers(&declared, kind, scope) {
            self.undeclared.push(capability.clone());
        }
        self.denials.push(capability.clone());
        Err(error(
            HostErrorCode::CAPABILITY_VIOLATION,
            &capability,
            "not granted",
        ))
    }
}

static NEXT_SLOT: AtomicU32 = AtomicU32::new(1);
static REGISTRY: Mutex<BTreeMap<u32, Arc<Mutex<MockState>>>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn error(code: HostErrorCode, capability: &str, message: &str) -> HostError {
    HostError {
        code,
        capability: RString::from(capability),
        message: RString::from(message),
    }
}

fn with_state<T>(
    token: ContextToken,
    f: impl FnOnce(&mut MockState) -> Result<T, HostError>,
) -> RResult<T, HostError> {
    let state = lock(&REGISTRY).get(&token.slot).cloned();
    let result = match state {
        Some(state) => {
            let mut state = lock(&state);
            if state.revoked {
                Err(error(
                    HostErrorCode::REVOKED,
                    "",
                    "the plugin was torn down",
                ))
            } else {
                catch_unwind(AssertUnwindSafe(|| f(&mut state))).unwrap_or_else(|_| {
                    Err(error(HostErrorCode::INTERNAL, "", "the mock host panicked"))
                })
            }
        }
        None => Err(error(
            HostErrorCode::REVOKED,
            "",
            "the plugin was torn down",
        )),
    };
    result.into()
}

extern "C" fn mock_log(
    token: ContextToken,
    level: LogLevel,
    message: RStr<'_>,
) -> RResult<(), HostError> {
    with_state(token, |s| {
        let level = match level {
            LogLevel::ERROR => Level::Error,
            LogLevel::WARN => Level::Warn,
            LogLevel::INFO => Level::Info,
            LogLevel::DEBUG => Level::Debug,
            _ => Level::Trace,
        };
        s.logs.push((level, message.as_str().to_owned()));
        Ok(())
    })
}

extern "C" fn mock_config(token: ContextToken) -> RResult<RVec<u8>, HostError> {
    with_state(token, |s| {
        Ok(RVec::from(
            serde_json::to_vec(&s.host.config).unwrap_or_default(),
        ))
    })
}

fn body<T: DeserializeOwned>(payload: &[u8]) -> Result<T, HostError> {
    serde_json::from_slice(payload)
        .map_err(|e| error(HostErrorCode::BAD_REQUEST, "", &e.to_string()))
}

fn json(value: &impl Serialize) -> Result<Vec<u8>, HostError> {
    serde_json::to_vec(value).map_err(|e| error(HostErrorCode::INTERNAL, "", &e.to_string()))
}

extern "C" fn mock_request(
    token: ContextToken,
    service_name: RStr<'_>,
    operation: RStr<'_>,
    payload: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    let payload = payload.as_slice();
    with_state(token, |s| {
        let (service_name, operation) = (service_name.as_str(), operation.as_str());
        let Some(request) = Request::parse(service_name, operation) else {
            return Err(error(
                HostErrorCode::UNSUPPORTED,
                "",
                &format!("no service {service_name:?} operation {operation:?}"),
            ));
        };
        let answer = match request {
            Request::KvGet | Request::KvSet | Request::KvDelete | Request::KvKeys => {
                s.require(CapabilityKind::Kv, None)?;
                match request {
                    Request::KvGet => json(&s.kv.get(&body::<wire::Key>(payload)?.key))?,
                    Request::KvSet => {
                        let req: wire::KeyValue = body(payload)?;
                        s.kv.insert(req.key, req.value);
                        b"null".to_vec()
                    }
                    Request::KvDelete => {
                        json(&s.kv.remove(&body::<wire::Key>(payload)?.key).is_some())?
                    }
                    _ => {
                        let prefix = body::<wire::Prefix>(payload)?.prefix;
                        json(
                            &s.kv
                                .keys()
                                .filter(|k| k.starts_with(&prefix))
                                .collect::<Vec<_>>(),
                        )?
                    }
                }
            }
            Request::EventsPublish => {
                let req: wire::Publish = body(payload)?;
                s.require(CapabilityKind::EventsPublish, Some(&req.topic))?;
                s.published.push((req.topic, req.payload));
                json(&0usize)?
            }
            Request::EventsSubscribe => {
                let req: wire::Pattern = body(payload)?;
                s.require(CapabilityKind::EventsSubscribe, Some(&req.pattern))?;
                if !s.subscriptions.contains(&req.pattern) {
                    s.subscriptions.push(req.pattern);
                }
                b"null".to_vec()
            }
            Request::EventsUnsubscribe => {
                let req: wire::Pattern = body(payload)?;
                s.require(CapabilityKind::EventsSubscribe, Some(&req.pattern))?;
                let before = s.subscriptions.len();
                s.subscriptions.retain(|p| *p != req.pattern);
                json(&(before != s.subscriptions.len()))?
            }
            Request::TimersEvery => {
                let req: wire::Every = body(payload)?;
                s.require(CapabilityKind::Timers, None)?;
                s.timers
                    .insert(req.name, Duration::from_millis(req.interval_ms));
                b"null".to_vec()
            }
            Request::TimersCancel => {
                let req: wire::Name = body(payload)?;
                s.require(CapabilityKind::Timers, None)?;
                json(&s.timers.remove(&req.name).is_some())?
            }
            Request::SecretsGet => {
                let req: wire::Name = body(payload)?;
                s.require(CapabilityKind::Secrets, Some(&req.name))?;
                let value = s.host.secrets.get(&req.name).cloned().ok_or_else(|| {
                    error(
                        HostErrorCode::BAD_REQUEST,
                        "",
                        &format!("no secret {:?} in the mock host", req.name),
                    )
                })?;
                json(&value)?
            }
            Request::PluginsCall => {
                let req: wire::Call = body(payload)?;
                s.require(CapabilityKind::PluginsCall, Some(&req.plugin))?;
                match s
                    .host
                    .answers
                    .get(&(req.plugin.clone(), req.action.clone()))
                {
                    Some(Ok(data)) => json(&serde_json::json!({"status": "ok", "data": data}))?,
                    Some(Err(message)) => {
                        json(&serde_json::json!({"status": "error", "data": message}))?
                    }
                    None => {
                        return Err(error(
                            HostErrorCode::call_failed(CallErrorCode::NotFound),
                            "",
                            &format!(
                                "the mock host has no answer for {}/{}",
                                req.plugin, req.action
                            ),
                        ))
                    }
                }
            }
            Request::Handover => s.handover.take().unwrap_or_default(),
        };
        Ok(RVec::from(answer))
    })
}

const VTABLE: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
    log: mock_log,
    config: mock_config,
    request: mock_request,
});

/// A plugin created by a [`MockHost`].
pub struct Mocked<P> {
    plugin: Option<P>,
    actions: Vec<(String, Handler<P>)>,
    hooks: Vec<(String, Handler<P>)>,
    state: Arc<Mutex<MockState>>,
    slot: u32,
}

impl<P> fmt::Debug for Mocked<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mocked")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

fn failed(e: PluginError) -> MockError {
    let code = match e.code {
        ErrorCode::BAD_INPUT => "bad_input",
        ErrorCode::NOT_FOUND => "not_found",
        ErrorCode::PANICKED => "panicked",
        ErrorCode::CAPABILITY_VIOLATION => "capability_violation",
        ErrorCode::REVOKED => "revoked",
        _ => "handler_error",
    };
    MockError::Failed {
        code,
        message: e.message.into_string(),
    }
}

impl<P: Plugin> Mocked<P> {
    fn plugin(&self) -> &P {
        self.plugin
            .as_ref()
            .unwrap_or_else(|| unreachable!("the plugin is only taken by teardown"))
    }

    fn state(&self) -> MutexGuard<'_, MockState> {
        lock(&self.state)
    }

    fn run<T>(&self, f: impl FnOnce(&P) -> T) -> Result<T, MockError> {
        catch_unwind(AssertUnwindSafe(|| f(self.plugin())))
            .map_err(|p| MockError::Panicked(panic_message(p)))
    }

    fn dispatch<I: Serialize, O: DeserializeOwned>(
        &self,
        handlers: &[(String, Handler<P>)],
        name: &str,
        input: &I,
    ) -> Result<Result<O, String>, MockError> {
        let input = serde_json::to_vec(input).map_err(|e| MockError::Codec(e.to_string()))?;
        match self.dispatch_bytes(handlers, name, &input)? {
            Ok(bytes) => crate::wire::parse(&bytes)
                .map(Ok)
                .map_err(|e| MockError::Codec(e.to_string())),
            Err(message) => Ok(Err(message)),
        }
    }

    fn dispatch_bytes(
        &self,
        handlers: &[(String, Handler<P>)],
        name: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, MockError> {
        let (_, handler) = handlers
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| MockError::NotFound(name.to_owned()))?;
        match self.run(|p| handler(p, input))? {
            Ok(bytes) => Ok(Ok(bytes)),
            Err(e) if e.code == ErrorCode::DOMAIN => Ok(Err(e.message.into_string())),
            Err(e) => Err(failed(e)),
        }
    }

    /// Calls an action; the inner result is the action's own `ok`/`error` envelope.
    ///
    /// # Errors
    ///
    /// [`MockError`] for anything else (not found, bad input, panic…).
    pub fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        action: &str,
        input: &I,
    ) -> Result<Result<O, String>, MockError> {
        self.dispatch(&self.actions, action, input)
    }

    /// Calls an action with bytes, as the host's `call_bytes` does (for actions registered
    /// with [`crate::Actions::add_bytes`]); an empty answer stands for `null`.
    ///
    /// # Errors
    ///
    /// [`MockError`] as [`Mocked::call`].
    pub fn call_bytes(
        &self,
        action: &str,
        input: &[u8],
    ) -> Result<Result<Vec<u8>, String>, MockError> {
        self.dispatch_bytes(&self.actions, action, input)
    }

    /// Runs one of the plugin's hooks.
    ///
    /// # Errors
    ///
    /// [`MockError`]; a hook's own error is `Failed { code: "handler_error", .. }`.
    pub fn hook<I: Serialize, O: DeserializeOwned>(
        &self,
        hook: &str,
        input: &I,
    ) -> Result<HookReply<O>, MockError> {
        match self.dispatch(&self.hooks, hook, input)? {
            Ok(reply) => Ok(reply),
            Err(message) => Err(MockError::Failed {
                code: "handler_error",
                message,
            }),
        }
    }

    /// Delivers an event to the plugin if one of its subscriptions matches; returns whether it
    /// was delivered.
    ///
    /// # Errors
    ///
    /// [`MockError::Panicked`] if `on_event` panicked.
    pub fn publish<T: Serialize>(&self, topic: &str, payload: &T) -> Result<bool, MockError> {
        let subscribed = self
            .state()
            .subscriptions
            .iter()
            .any(|p| glob_match(p, topic));
        if !subscribed {
            return Ok(false);
        }
        let payload = serde_json::to_value(payload).map_err(|e| MockError::Codec(e.to_string()))?;
        self.run(|p| p.on_event(topic, &payload))?;
        Ok(true)
    }

    /// Runs the timer job `name` once, if it is scheduled; returns whether it ran.
    ///
    /// # Errors
    ///
    /// [`MockError::Panicked`] if `on_timer` panicked.
    pub fn fire_timer(&self, name: &str) -> Result<bool, MockError> {
        if !self.state().timers.contains_key(name) {
            return Ok(false);
        }
        self.run(|p| p.on_timer(name))?;
        Ok(true)
    }

    /// Runs every scheduled timer job once, in name order; returns how many ran.
    ///
    /// # Errors
    ///
    /// [`MockError::Panicked`] if an `on_timer` panicked.
    pub fn run_timers(&self) -> Result<usize, MockError> {
        let names: Vec<String> = self.state().timers.keys().cloned().collect();
        for name in &names {
            self.run(|p| p.on_timer(name))?;
        }
        Ok(names.len())
    }

    /// The plugin's health.
    ///
    /// # Errors
    ///
    /// [`MockError::Panicked`].
    pub fn health(&self) -> Result<Health, MockError> {
        self.run(Plugin::health)
    }

    /// Changes the config as the host would: validate, then apply live or report a restart.
    ///
    /// # Errors
    ///
    /// [`MockError::Failed`] with code `config_invalid` if the plugin rejects it.
    pub fn set_config(&self, config: Value) -> Result<ConfigChange, MockError> {
        let report = P::validate_config(&config);
        if !report.is_ok() {
            return Err(MockError::Failed {
                code: "config_invalid",
                message: report.errors.join("; "),
            });
        }
        self.state().host.config = config.clone();
        self.run(|p| p.config_changed(&config))
    }

    /// What the plugin logged, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.state().logs.clone()
    }

    /// The plugin's key/value namespace.
    pub fn kv(&self) -> BTreeMap<String, Value> {
        self.state().kv.clone()
    }

    /// The events the plugin published, in order.
    pub fn published(&self) -> Vec<(String, Value)> {
        self.state().published.clone()
    }

    /// The patterns the plugin is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.state().subscriptions.clone()
    }

    /// The timer jobs the plugin has scheduled, with their intervals.
    pub fn timers(&self) -> BTreeMap<String, Duration> {
        self.state().timers.clone()
    }

    /// Capabilities the plugin was denied, in order (one entry per attempt).
    pub fn denials(&self) -> Vec<String> {
        self.state().denials.clone()
    }

    /// Warnings `validate_config` gave about the config.
    pub fn config_warnings(&self) -> Vec<String> {
        self.state().warnings.clone()
    }

    /// The state the plugin would hand to its next generation on a reload, and a new instance
    /// created with it (as a hot reload does).
    ///
    /// # Errors
    ///
    /// As [`MockHost::create`].
    pub fn reload(&self) -> Result<Mocked<P>, InitError> {
        let snapshot = self
            .run(Plugin::snapshot)
            .map_err(|e| InitError::new(e.to_string()))?;
        let host = self.state().host.clone();
        let next = host.create_with_handover::<P>(snapshot.map(|s| s.encode()))?;
        Ok(next)
    }

    /// Tears the plugin down and checks it left nothing behind: no timer, no subscription, no
    /// use of an undeclared capability, no panic. The context is revoked afterwards.
    ///
    /// # Errors
    ///
    /// [`Leaks`] listing what was found.
    pub fn teardown(mut self) -> Result<(), Leaks> {
        let plugin = self.plugin.take();
        let panicked = plugin.and_then(|p| {
            catch_unwind(AssertUnwindSafe(|| p.teardown()))
                .err()
                .map(panic_message)
        });
        let mut state = self.state();
        state.revoked = true;
        let leaks = Leaks {
            timers: state.timers.keys().cloned().collect(),
            subscriptions: state.subscriptions.clone(),
            undeclared: state.undeclared.clone(),
            panicked,
        };
        drop(state);
        if leaks == Leaks::default() {
            Ok(())
        } else {
            Err(leaks)
        }
    }
}

impl<P> Drop for Mocked<P> {
    fn drop(&mut self) {
        lock(&self.state).revoked = true;
        lock(&REGISTRY).remove(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::*;
    use crate::{ActionError, ContextError, Snapshot};

    /// A plugin that touches every service, as its config asks.
    struct Everything {
        ctx: Context,
        restored: Option<u32>,
    }

    impl Plugin for Everything {
        fn create(ctx: Context) -> Result<Self, InitError> {
            let restored = ctx.handover()?.map(|s| s.version);
            ctx.info("created");
            Ok(Self { ctx, restored })
        }

        fn validate_config(config: &Value) -> ConfigReport {
            let mut report = ConfigReport::default();
            if config.get("bad").is_some() {
                report.errors.push("bad is not allowed".to_owned());
            }
            report
        }

        fn actions(actions: &mut Actions<Self>) {
            actions.add("use", |this: &Self, what: String| {
                let ctx = &this.ctx;
                let done: Result<Value, ContextError> = match what.as_str() {
                    "kv" => ctx
                        .kv()
                        .set("k", &1)
                        .and_then(|()| ctx.kv().get::<Value>("k"))
                        .map(|v| json!(v)),
                    "publish" => ctx.events().publish("t.x", &"hi").map(|n| json!(n)),
                    "subscribe" => ctx.events().subscribe("t.*").map(|()| Value::Null),
                    "unsubscribe" => ctx.events().unsubscribe("t.*").map(|b| json!(b)),
                    "timer" => ctx
                        .timers()
                        .every("tick", Duration::from_secs(1))
                        .map(|()| Value::Null),
                    "cancel" => ctx.timers().cancel("tick").map(|b| json!(b)),
                    "secret" => ctx.secrets().get("token").map(|s| json!(s)),
                    "call" => ctx
                        .plugins()
                        .call::<_, Value>("other", "act", &1)
                        .map(|r| json!(r)),
                    "undeclared" => ctx.secrets().get("undeclared").map(|s| json!(s)),
                    other => return Err(ActionError::new(format!("unknown {other}"))),
                };
                Ok::<_, ActionError>(done?)
            });
            actions.add("restored", |this: &Self, (): ()| {
                Ok::<_, ActionError>(this.restored)
            });
            actions.add("nothing", |_: &Self, (): ()| Ok::<_, ActionError>(()));
            actions.add_bytes("reverse", |_: &Self, input: &[u8]| {
                Ok(input.iter().rev().copied().collect())
            });
        }

        fn hooks(hooks: &mut Hooks<Self>) {
            hooks.add("h", |_: &Self, s: String| {
                Ok::<_, ActionError>(if s == "block" {
                    HookReply::Block("no".into())
                } else {
                    HookReply::Continue(s + "!")
                })
            });
        }

        fn on_event(&self, topic: &str, _payload: &Value) {
            self.ctx.info(&format!("event {topic}"));
        }

        fn on_timer(&self, name: &str) {
            self.ctx.info(&format!("timer {name}"));
        }

        fn snapshot(&self) -> Option<Snapshot> {
            Some(Snapshot {
                version: 7,
                bytes: vec![1],
            })
        }
    }

    const MANIFEST: &str = r#"{"id": "everything", "version": "0.1.0",
        "capabilities": ["kv", "events.publish:t.*", "events.subscribe:t.*", "timers",
                         "secrets:token", "plugins.call:other"],
        "actions": [{"name": "use"}, {"name": "restored"}, {"name": "nothing"}, {"name": "reverse"}],
        "hooks": [{"name": "h"}]}"#;

    fn mock(host: MockHost) -> Mocked<Everything> {
        host.create::<Everything>().expect("created")
    }

    fn call(m: &Mocked<Everything>, what: &str) -> Result<Result<Value, String>, MockError> {
        m.call::<_, Value>("use", &what)
    }

    #[test]
    fn unit_answers_are_empty_and_bytes_actions_skip_json() {
        let m = mock(MockHost::new(MANIFEST).expect("manifest"));
        // `()` in, `()` out: nothing is parsed or allocated, and the empty answer reads as null.
        assert_eq!(m.call_bytes("nothing", b"").expect("call"), Ok(Vec::new()));
        assert_eq!(
            m.call_bytes("nothing", b"null").expect("call"),
            Ok(Vec::new())
        );
        assert_eq!(
            m.call::<_, Value>("nothing", &()).expect("call"),
            Ok(Value::Null)
        );
        // A value that is not null still does not fit `()`.
        assert!(matches!(
            m.call_bytes("nothing", br#"{"x": 1}"#),
            Err(MockError::Failed {
                code: "bad_input",
                ..
            })
        ));
        // `Option` answers keep their JSON.
        assert_eq!(
            m.call_bytes("restored", b"").expect("call"),
            Ok(b"null".to_vec())
        );
        // Bytes in, bytes out, whatever they are.
        assert_eq!(
            m.call_bytes("reverse", b"\xffab").expect("call"),
            Ok(b"ba\xff".to_vec())
        );
    }

    #[test]
    fn every_service_works_when_granted_and_is_recorded() {
        let host = MockHost::new(MANIFEST)
            .expect("manifest")
            .secret("token", "s3cret")
            .answer("other", "act", Ok(json!("answered")));
        let m = mock(host);
        assert_eq!(call(&m, "kv"), Ok(Ok(json!(1))));
        assert_eq!(m.kv()["k"], 1);
        assert_eq!(call(&m, "publish"), Ok(Ok(json!(0))));
        assert_eq!(m.published(), vec![("t.x".to_owned(), json!("hi"))]);
        call(&m, "subscribe").expect("ok").expect("ok");
        assert_eq!(m.publish("t.y", &1), Ok(true));
        assert_eq!(m.publish("u.y", &1), Ok(false));
        call(&m, "timer").expect("ok").expect("ok");
        assert_eq!(m.timers()["tick"], Duration::from_secs(1));
        assert_eq!(m.fire_timer("tick"), Ok(true));
        assert_eq!(m.run_timers(), Ok(1));
        assert_eq!(call(&m, "secret"), Ok(Ok(json!("s3cret"))));
        assert_eq!(call(&m, "call"), Ok(Ok(json!({"Ok": "answered"}))));
        let logs: Vec<String> = m.logs().into_iter().map(|(_, l)| l).collect();
        assert_eq!(logs, ["created", "event t.y", "timer tick", "timer tick"]);
        assert_eq!(
            m.hook::<_, String>("h", &"x"),
            Ok(HookReply::Continue("x!".to_owned()))
        );
        assert_eq!(
            m.hook::<_, String>("h", &"block"),
            Ok(HookReply::Block("no".to_owned()))
        );
        assert!(m.denials().is_empty());
        call(&m, "unsubscribe").expect("ok").expect("ok");
        call(&m, "cancel").expect("ok").expect("ok");
        m.teardown().expect("nothing left behind");
    }

    #[test]
    fn denied_capabilities_are_typed_errors_and_recorded() {
        let m = mock(
            MockHost::new(MANIFEST)
                .expect("manifest")
                .grants(&["timers"]),
        );
        for (what, capability) in [
            ("kv", "kv"),
            ("publish", "events.publish:t.x"),
            ("subscribe", "events.subscribe:t.*"),
            ("secret", "secrets:token"),
            ("call", "plugins.call:other"),
        ] {
            match call(&m, what) {
                Err(MockError::Failed {
                    code: "capability_violation",
                    message,
                }) => {
                    assert!(message.contains(capability), "{what}: {message}");
                }
                other => panic!("{what} was not denied: {other:?}"),
            }
        }
        assert_eq!(m.denials().len(), 5);
        m.teardown()
            .expect("declared capabilities denied by the operator are not leaks");
    }

    #[test]
    fn teardown_reports_leftover_timers_subscriptions_and_undeclared_use() {
        let m = mock(
            MockHost::new(MANIFEST)
                .expect("manifest")
                .secret("token", "x"),
        );
        call(&m, "timer").expect("ok").expect("ok");
        call(&m, "subscribe").expect("ok").expect("ok");
        assert!(matches!(
            call(&m, "undeclared"),
            Err(MockError::Failed {
                code: "capability_violation",
                ..
            })
        ));
        let leaks = m.teardown().expect_err("leaks found");
        assert_eq!(leaks.timers, ["tick"]);
        assert_eq!(leaks.subscriptions, ["t.*"]);
        assert_eq!(leaks.undeclared, ["secrets:undeclared"]);
        assert!(leaks.to_string().contains("secrets:undeclared"));
    }

    #[test]
    fn config_is_validated_and_state_is_handed_over() {
        let err = MockHost::new(MANIFEST)
            .expect("manifest")
            .config(json!({"bad": 1}))
            .create::<Everything>()
            .expect_err("rejected");
        assert!(err.message().contains("bad is not allowed"));
        let m = mock(MockHost::new(MANIFEST).expect("manifest"));
        assert_eq!(m.call::<_, Option<u32>>("restored", &()), Ok(Ok(None)));
        let next = m.reload().expect("reloaded");
        assert_eq!(
            next.call::<_, Option<u32>>("restored", &()),
            Ok(Ok(Some(7)))
        );
        assert!(matches!(
            m.set_config(json!({"bad": 2})),
            Err(MockError::Failed {
                code: "config_invalid",
                ..
            })
        ));
        assert_eq!(m.set_config(json!({})), Ok(ConfigChange::Restart));
    }

    #[test]
    fn a_context_kept_past_teardown_is_revoked() {
        struct Keeper;
        static KEPT: Mutex<Option<Context>> = Mutex::new(None);
        impl Plugin for Keeper {
            fn create(ctx: Context) -> Result<Self, InitError> {
                *lock(&KEPT) = Some(ctx);
                Ok(Self)
            }
        }
        let m = MockHost::new(r#"{"id": "keeper", "version": "0.1.0"}"#)
            .expect("manifest")
            .create::<Keeper>()
            .expect("created");
        m.teardown().expect("clean");
        let ctx = lock(&KEPT).take().expect("kept");
        assert_eq!(ctx.log(Level::Info, "after"), Err(ContextError::Revoked));
    }
}

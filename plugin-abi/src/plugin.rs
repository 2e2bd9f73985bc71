//! The safe API plugin authors write against: the [`Plugin`] trait, the typed [`Context`], the
//! action registry and the error values.

use std::fmt;

use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use serde::de::value::UnitDeserializer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ffi::{ErrorCode, HostContext, HostError, HostErrorCode, LogLevel};
use crate::wire::{CallErrorCode, ConfigReport, Request, RunInfo};

/// One run of a timer job, as [`Plugin::on_job`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRun {
    /// The job's name.
    pub name: String,
    /// The run's id: every run the host starts has its own.
    pub run: u64,
    /// When the run was due (UTC): the cron match, the interval's end, or the manual trigger.
    pub scheduled: std::time::SystemTime,
    /// Whether the host program or the operator started it by hand.
    pub manual: bool,
}

impl JobRun {
    /// The run described by a `TIMER` invocation (no description: run 0, due now).
    pub fn from_invocation(name: &str, payload: &[u8]) -> Self {
        let info: Option<RunInfo> = serde_json::from_slice(payload).ok();
        let scheduled = info.map_or_else(std::time::SystemTime::now, |i| {
            let ms = u64::try_from(i.scheduled_ms).unwrap_or(0);
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
        });
        Self {
            name: name.to_owned(),
            run: info.map_or(0, |i| i.run),
            scheduled,
            manual: info.is_some_and(|i| i.manual),
        }
    }
}

/// A plugin: created by the host with a [`Context`], serving actions until torn down.
///
/// The type must be `Send + Sync`: if its manifest says `"concurrency": "parallel"` the host
/// may call it from several threads at once; with `"serial"` (the default) the host never does.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Creates the plugin. Read the config with [`Context::config`]; keep the context to log
    /// and to reach host services later.
    ///
    /// # Errors
    ///
    /// An [`InitError`] refuses the plugin (`init_failed`); the host keeps running.
    fn create(ctx: Context) -> Result<Self, InitError>;

    /// Registers a handler for every action declared in `plugin.json`.
    ///
    /// An action declared but not registered, or registered but not declared, refuses the plugin
    /// at creation, naming the action.
    fn actions(actions: &mut Actions<Self>) {
        let _ = actions;
    }

    /// Registers a handler for every hook declared in `plugin.json`; as with actions, a hook
    /// declared but not registered (or the reverse) refuses the plugin at creation.
    fn hooks(hooks: &mut Hooks<Self>) {
        let _ = hooks;
    }

    /// How the plugin is doing.
    fn health(&self) -> Health {
        Health::Ok
    }

    /// Checks a config before the plugin is created with it (or before a live change). Errors
    /// refuse the config; warnings are shown. Runs without an instance.
    fn validate_config(config: &serde_json::Value) -> ConfigReport {
        let _ = config;
        ConfigReport::default()
    }

    /// Applies a new config live. Return [`ConfigChange::Restart`] (the default) to have the
    /// host tear this instance down and create a new one with the new config.
    fn config_changed(&self, config: &serde_json::Value) -> ConfigChange {
        let _ = config;
        ConfigChange::Restart
    }

    /// An event on a topic the plugin subscribed to with `ctx.events().subscribe(..)`.
    fn on_event(&self, topic: &str, payload: &serde_json::Value) {
        let _ = (topic, payload);
    }

    /// A run of the job `name` started with `ctx.timers().every(..)` or `.cron(..)`.
    fn on_timer(&self, name: &str) {
        let _ = name;
    }

    /// A run of a timer job, with its run id and the time it was due; by default it calls
    /// [`Plugin::on_timer`] with the job's name.
    fn on_job(&self, run: &JobRun) {
        self.on_timer(&run.name);
    }

    /// State to hand to the next generation when the plugin is reloaded: versioned bytes the
    /// new build receives through [`Context::handover`] in its `create`. The version is the
    /// new build's to judge; a version it does not understand is its decision, never a crash.
    fn snapshot(&self) -> Option<Snapshot> {
        None
    }

    /// Releases what the plugin holds. Runs once, before the context is revoked, within the
    /// shutdown deadline the operator set. Stop every thread the plugin started here.
    fn teardown(self) {}
}

/// State handed from one generation of a plugin to the next across a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The format version, chosen by the plugin.
    pub version: u32,
    /// The state.
    pub bytes: Vec<u8>,
}

impl Snapshot {
    /// Encodes as the wire form: little-endian version, then the bytes.
    #[doc(hidden)]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.bytes.len());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Decodes the wire form; `None` for an empty (or too short) buffer.
    #[doc(hidden)]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let version = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
        Some(Self {
            version,
            bytes: bytes[4..].to_vec(),
        })
    }
}

/// What a plugin did with a live config change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// Applied; the plugin keeps running.
    Applied,
    /// Not applied; the host re-creates the plugin with the new config.
    Restart,
}

/// The plugin's door back into the host: a token checked on every use, and revoked when the
/// plugin is torn down. After revocation every method returns [`ContextError::Revoked`].
#[derive(Debug, Clone, Copy)]
pub struct Context {
    raw: HostContext,
}

/// Why a call through the [`Context`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextError {
    /// The context was revoked: the plugin was torn down, reloaded or disabled.
    Revoked,
    /// The operator did not grant this capability (an audit record was written).
    CapabilityViolation {
        /// The capability that was needed.
        capability: String,
    },
    /// The host does not offer this service or operation.
    Unsupported(String),
    /// The request was malformed.
    BadRequest(String),
    /// The host failed to serve the request.
    Host(String),
    /// The host's answer did not decode into the expected type.
    Decode(String),
    /// A service of the embedding program answered with its own error.
    Service(String),
    /// The host's policy refused the request although the capability covers it (a scheme, a
    /// private address, a limit); an audit record was written.
    Refused(String),
    /// The host tried and the outside world failed (a connection, a timeout, an answer over its
    /// size limit).
    Unreachable(String),
    /// A call to another plugin failed in the host or in that plugin.
    Call {
        /// What went wrong (`not_found`, `bad_input`, `panicked`, …).
        code: CallErrorCode,
        /// Detail.
        message: String,
    },
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Revoked => f.write_str("the plugin's context has been revoked"),
            Self::CapabilityViolation { capability } => {
                write!(f, "capability {capability} was not granted to this plugin")
            }
            Self::Unsupported(m) => write!(f, "unsupported request: {m}"),
            Self::BadRequest(m) => write!(f, "bad request: {m}"),
            Self::Host(m) => write!(f, "host error: {m}"),
            Self::Decode(m) => write!(f, "could not decode the host's answer: {m}"),
            Self::Service(m) => write!(f, "the service failed: {m}"),
            Self::Refused(m) => write!(f, "refused by the host's policy: {m}"),
            Self::Unreachable(m) => write!(f, "unreachable: {m}"),
            Self::Call { code, message } => write!(f, "the call failed ({code}): {message}"),
        }
    }
}

impl std::error::Error for ContextError {}

impl From<HostError> for ContextError {
    fn from(e: HostError) -> Self {
        let message = e.message.into_string();
        match e.code {
            HostErrorCode::REVOKED => Self::Revoked,
            HostErrorCode::CAPABILITY_VIOLATION => Self::CapabilityViolation {
                capability: e.capability.into_string(),
            },
            HostErrorCode::UNSUPPORTED => Self::Unsupported(message),
            HostErrorCode::BAD_REQUEST => Self::BadRequest(message),
            HostErrorCode::SERVICE_FAILED => Self::Service(message),
            HostErrorCode::REFUSED => Self::Refused(message),
            HostErrorCode::UNREACHABLE => Self::Unreachable(message),
            code => match code.call_error() {
                Some(code) => Self::Call { code, message },
                None => Self::Host(message),
            },
        }
    }
}

/// A log level for [`Context::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Information.
    Info,
    /// Debugging detail.
    Debug,
    /// Tracing detail.
    Trace,
}

impl Level {
    /// Its value on the wire.
    pub const fn code(self) -> LogLevel {
        match self {
            Self::Error => LogLevel::ERROR,
            Self::Warn => LogLevel::WARN,
            Self::Info => LogLevel::INFO,
            Self::Debug => LogLevel::DEBUG,
            Self::Trace => LogLevel::TRACE,
        }
    }
}

impl Context {
    /// Wraps the raw context the host passed in. Used by `export_plugin!`.
    #[doc(hidden)]
    pub fn from_raw(raw: HostContext) -> Self {
        Self { raw }
    }

    /// The raw token and vtable.
    pub fn raw(&self) -> HostContext {
        self.raw
    }

    /// Writes a line to the host's log, in this plugin's span.
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] after teardown.
    pub fn log(&self, level: Level, message: &str) -> Result<(), ContextError> {
        match (self.raw.vtable.log())(self.raw.token, level.code(), RStr::from_str(message)) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Logs `message` with structured `fields` (name, JSON value): the host emits them as
    /// `tracing` fields of one event on the plugin's span, so a host writing JSON logs has
    /// them as JSON.
    ///
    /// ```no_run
    /// # use airlock_abi::{Context, Level};
    /// # fn f(ctx: &Context) {
    /// ctx.info_with("order shipped", &[("order", 42.into()), ("express", true.into())]);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] after teardown; `BadRequest` for a field name that is not
    /// `a-z A-Z 0-9 _ .` or more than [`crate::wire::MAX_LOG_FIELDS`] fields.
    pub fn log_with(
        &self,
        level: Level,
        message: &str,
        fields: &[(&str, serde_json::Value)],
    ) -> Result<(), ContextError> {
        let line = crate::wire::LogLine {
            level: level.code().0,
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        };
        let body =
            serde_json::to_vec(&line).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.request(
            Request::LogWrite.service(),
            Request::LogWrite.operation(),
            &body,
        )
        .map(drop)
    }

    /// Whether the call being served was cancelled — by its caller, because the plugin is being
    /// torn down (disabled, reloaded, shut down), because the call that made this one (a
    /// plugin calling a plugin) was, or because the watchdog reported it past its timeout. Cheap enough to poll in a loop; a long action should, and
    /// return early: its caller gets the outcome `cancelled`. A revoked context is cancelled.
    pub fn cancelled(&self) -> bool {
        match self.request(
            Request::ContextCancelled.service(),
            Request::ContextCancelled.operation(),
            &[],
        ) {
            Ok(answer) => answer == b"true",
            Err(ContextError::Revoked) => true,
            Err(_) => false,
        }
    }

    /// Emits a partial result of the call being served: a caller taking the call as a stream
    /// (`host.call_stream(..)`, an MCP client's progress) receives it at once, in order; for a
    /// caller that is not, it is discarded. When the caller is behind, this waits for it (the
    /// stream's buffer is bounded). Hooks, events and timers are never streamed.
    ///
    /// # Errors
    ///
    /// [`ContextError::Call`] with [`CallErrorCode::Cancelled`] once the caller cancelled the
    /// call or stopped taking the stream: stop and return; `BadRequest` for a chunk over the
    /// host's limit (1 MiB); [`ContextError::Revoked`] after teardown.
    pub fn emit<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), ContextError> {
        let mut body = vec![crate::wire::CHUNK_JSON];
        serde_json::to_writer(&mut body, value)
            .map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.emit_body(&body)
    }

    /// [`Context::emit`] for a chunk of bytes (text being written, a file's parts).
    ///
    /// # Errors
    ///
    /// As [`Context::emit`].
    pub fn emit_bytes(&self, bytes: &[u8]) -> Result<(), ContextError> {
        let mut body = Vec::with_capacity(bytes.len() + 1);
        body.push(crate::wire::CHUNK_BYTES);
        body.extend_from_slice(bytes);
        self.emit_body(&body)
    }

    fn emit_body(&self, body: &[u8]) -> Result<(), ContextError> {
        self.request(
            Request::StreamEmit.service(),
            Request::StreamEmit.operation(),
            body,
        )
        .map(drop)
    }

    /// [`Context::log_with`] at info level; a revoked context drops the line.
    pub fn info_with(&self, message: &str, fields: &[(&str, serde_json::Value)]) {
        let _ = self.log_with(Level::Info, message, fields);
    }

    /// [`Context::log_with`] at warn level; a revoked context drops the line.
    pub fn warn_with(&self, message: &str, fields: &[(&str, serde_json::Value)]) {
        let _ = self.log_with(Level::Warn, message, fields);
    }

    /// [`Context::log_with`] at error level; a revoked context drops the line.
    pub fn error_with(&self, message: &str, fields: &[(&str, serde_json::Value)]) {
        let _ = self.log_with(Level::Error, message, fields);
    }

    /// Logs at info level; a revoked context drops the line.
    pub fn info(&self, message: &str) {
        let _ = self.log(Level::Info, message);
    }

    /// Logs at warn level; a revoked context drops the line.
    pub fn warn(&self, message: &str) {
        let _ = self.log(Level::Warn, message);
    }

    /// Logs at error level; a revoked context drops the line.
    pub fn error(&self, message: &str) {
        let _ = self.log(Level::Error, message);
    }

    /// Logs at debug level; a revoked context drops the line.
    pub fn debug(&self, message: &str) {
        let _ = self.log(Level::Debug, message);
    }

    /// The plugin's config (the operator's table from the policy) as a typed value.
    /// A plugin with no config gets an empty JSON object.
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] after teardown; [`ContextError::Decode`] if the config does
    /// not fit `T` (the message names the field).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, ContextError> {
        let bytes = match (self.raw.vtable.config())(self.raw.token) {
            RResult::ROk(bytes) => bytes,
            RResult::RErr(e) => return Err(e.into()),
        };
        serde_json::from_slice(bytes.as_slice()).map_err(|e| ContextError::Decode(e.to_string()))
    }

    /// The state the previous generation handed over, when this instance is being created by a
    /// hot reload of a plugin that implements [`Plugin::snapshot`]. `None` on a fresh start.
    /// Needs no capability; the state is given once.
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] after teardown.
    pub fn handover(&self) -> Result<Option<Snapshot>, ContextError> {
        let request = Request::Handover;
        let bytes = self.request(request.service(), request.operation(), &[])?;
        Ok(Snapshot::decode(&bytes))
    }

    /// A named request to a host service, checked against the plugin's grants. The typed
    /// service wrappers are built on this.
    ///
    /// # Errors
    ///
    /// Whatever the host answered, as a [`ContextError`].
    pub fn request(
        &self,
        service: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ContextError> {
        match (self.raw.vtable.request())(
            self.raw.token,
            RStr::from_str(service),
            RStr::from_str(operation),
            RSlice::from_slice(payload),
        ) {
            RResult::ROk(bytes) => Ok(bytes.into_vec()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Who asked for the call this plugin is serving now: the host program (on behalf of a
    /// principal, when it named one) or another plugin. Outside a call (in `create`, a timer or
    /// an event) it is the host with no principal.
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] if the context was revoked.
    pub fn caller(&self) -> Result<crate::wire::CallerInfo, ContextError> {
        let answer = self.request(
            crate::wire::Request::ContextCaller.service(),
            crate::wire::Request::ContextCaller.operation(),
            &[],
        )?;
        serde_json::from_slice(&answer).map_err(|e| ContextError::Decode(e.to_string()))
    }

    /// Calls operation `O` of a service the embedding program offers (named in an interface
    /// crate both sides depend on: see [`crate::contract`]). Needs the capability
    /// `service:<service>.<operation>`.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without the grant; [`ContextError::Unsupported`]
    /// if the host does not offer the operation, or offers another version of it;
    /// [`ContextError::Service`] if the service answered with an error;
    /// [`ContextError::Decode`] if its answer does not decode into `O::Output`.
    pub fn service<O: crate::contract::Operation>(
        &self,
        input: &O::Input,
    ) -> Result<O::Output, ContextError> {
        let payload =
            serde_json::to_vec(input).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let operation = crate::contract::wire_name::<O>();
        let service = <O::Service as crate::contract::Service>::NAME;
        let answer = self.request(service, &operation, &payload)?;
        serde_json::from_slice(&answer).map_err(|e| {
            ContextError::Decode(format!(
                "the answer of {service}.{operation} does not fit this plugin's contract: {e}"
            ))
        })
    }
}

/// Why a plugin could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError(String);

impl InitError {
    /// An error with a message for the operator.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<ContextError> for InitError {
    fn from(e: ContextError) -> Self {
        Self(e.to_string())
    }
}

/// A domain error from an action: the `error(message)` side of the result envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError(String, ErrorCode);

impl ActionError {
    /// An error with a message for the caller.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into(), ErrorCode::DOMAIN)
    }

    /// A domain error worth trying again later (a dependency was briefly unavailable, a rate
    /// limit): `host.dispatch` retries the call with the backoff the operator's policy sets.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self(message.into(), ErrorCode::RETRYABLE)
    }

    /// Whether [`ActionError::retryable`] made it.
    pub fn is_retryable(&self) -> bool {
        self.1 == ErrorCode::RETRYABLE
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }

    fn into_plugin_error(self) -> crate::ffi::PluginError {
        crate::ffi::PluginError::new(self.1, self.0)
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A failure of the host's context is not the action's domain error: a capability violation or
/// a revoked context reaches the caller with its own code (`capability_violation`, `revoked`),
/// whoever the caller is.
impl From<ContextError> for ActionError {
    fn from(e: ContextError) -> Self {
        let code = match &e {
            ContextError::CapabilityViolation { .. } => ErrorCode::CAPABILITY_VIOLATION,
            ContextError::Revoked => ErrorCode::REVOKED,
            _ => ErrorCode::DOMAIN,
        };
        Self(e.to_string(), code)
    }
}

/// A plugin's health, as reported by [`Plugin::health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Health {
    /// Working normally.
    Ok,
    /// Working, with a problem worth showing.
    Degraded(String),
    /// Not working.
    Error(String),
}

/// Wraps a typed handler into the byte-level form the host calls: the input is deserialized
/// from JSON (empty is `null`), the output serialized straight into the host's buffer, and each
/// failure gets its code.
fn typed_handler<P, I, O, F>(what: &'static str, name: &str, handler: F) -> Handler<P>
where
    I: DeserializeOwned,
    O: Serialize,
    F: Fn(&P, I) -> Result<O, ActionError> + Send + Sync + 'static,
{
    use crate::ffi::{ErrorCode, PluginError};
    let name = name.to_owned();
    // Whether the output type answers `null` (a zero-sized type), settled by the first answer.
    let null_answer = std::sync::OnceLock::new();
    Box::new(move |plugin, input, out| {
        // `null` (or nothing) needs no parser: most inputs of `()` and `Option` go this way.
        let unit = (input.is_empty() || input == b"null")
            .then(|| I::deserialize(UnitDeserializer::<serde::de::value::Error>::new()).ok())
            .flatten();
        let input: I = match unit {
            Some(input) => input,
            None => crate::wire::parse(input).map_err(|e| {
                PluginError::new(
                    ErrorCode::BAD_INPUT,
                    format!("input of {what} {name:?} does not fit: {e}"),
                )
            })?,
        };
        let output = handler(plugin, input).map_err(ActionError::into_plugin_error)?;
        if std::mem::size_of::<O>() == 0 && *null_answer.get_or_init(|| answers_null(&output)) {
            return Ok(());
        }
        let mut writer = Batched::new(out);
        serde_json::to_writer(&mut writer, &output).map_err(|e| {
            PluginError::new(
                ErrorCode::HANDLER,
                format!("output of {what} {name:?} does not serialize: {e}"),
            )
        })?;
        writer.flush_batch();
        Ok(())
    })
}

/// Gathers small writes on the stack and appends them to the host's buffer in large pieces:
/// serde_json writes token by token, and every append to an `RVec` checks its capacity through
/// the vector's own functions.
struct Batched<'a> {
    out: &'a mut RVec<u8>,
    batch: [u8; 256],
    len: usize,
}

impl<'a> Batched<'a> {
    fn new(out: &'a mut RVec<u8>) -> Self {
        Self {
            out,
            batch: [0; 256],
            len: 0,
        }
    }

    fn flush_batch(&mut self) {
        self.out.extend_from_copy_slice(&self.batch[..self.len]);
        self.len = 0;
    }
}

impl std::io::Write for Batched<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.len + bytes.len() > self.batch.len() {
            self.flush_batch();
            if bytes.len() > self.batch.len() {
                self.out.extend_from_copy_slice(bytes);
                return Ok(bytes.len());
            }
        }
        self.batch[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_batch();
        Ok(())
    }
}

/// Whether `value` is a zero-sized value whose JSON is `null` (`()`, unit structs): such an
/// answer is sent as nothing, without an allocation.
fn answers_null<T: Serialize>(value: &T) -> bool {
    if std::mem::size_of::<T>() != 0 {
        return false;
    }
    let mut buf = [0u8; 8];
    let mut out = &mut buf[..];
    serde_json::to_writer(&mut out, value).is_ok() && {
        let written = 8 - out.len();
        &buf[..written] == b"null"
    }
}

/// A handler as the plugin side keeps it: input bytes in, answer appended to the host's buffer.
pub(crate) type Handler<P> =
    Box<dyn Fn(&P, &[u8], &mut RVec<u8>) -> Result<(), crate::ffi::PluginError> + Send + Sync>;

/// The buffer an action's answer is written into. It belongs to the host and grows with the
/// host's allocator, so the answer crosses the boundary without another copy; see
/// [`Actions::add_bytes_into`].
pub struct Reply<'a>(&'a mut RVec<u8>);

impl Reply<'_> {
    /// Appends `bytes` to the answer.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_copy_slice(bytes);
    }

    /// Appends one byte.
    pub fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }

    /// Makes room for at least `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    /// The answer so far.
    pub fn as_slice(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// How many bytes the answer has so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply").field("len", &self.len()).finish()
    }
}

impl std::io::Write for Reply<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The registry a plugin fills in [`Plugin::actions`].
pub struct Actions<P> {
    pub(crate) handlers: Vec<(String, Handler<P>)>,
}

impl<P> fmt::Debug for Actions<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.handlers.iter().map(|(name, _)| name))
            .finish()
    }
}

impl<P: 'static> Actions<P> {
    pub(crate) fn new() -> Self {
        Self {
            handlers: Vec::new(),
        }
    }

    /// Registers `handler` for the action `name`. Its input is deserialized from the caller's
    /// JSON (an empty input is `null`, so `()` and `Option<T>` accept it); its output is
    /// serialized back, and an output of `()` is sent as an empty answer, which callers read
    /// as `null` ([`crate::wire::parse`]).
    pub fn add<I, O, F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&P, I) -> Result<O, ActionError> + Send + Sync + 'static,
    {
        let handler = typed_handler("action", name, handler);
        self.handlers.push((name.to_owned(), handler));
        self
    }

    /// Registers `handler` for the action `name` as bytes in, bytes out: no JSON on either
    /// side, for payloads that are not JSON or a plugin that parses them itself. Callers use
    /// `call_bytes`; the host's JSON `call` works only if the answer is JSON.
    pub fn add_bytes<F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        F: Fn(&P, &[u8]) -> Result<Vec<u8>, ActionError> + Send + Sync + 'static,
    {
        let handler: Handler<P> = Box::new(move |plugin, input, out| {
            let answer = handler(plugin, input).map_err(ActionError::into_plugin_error)?;
            out.extend_from_copy_slice(&answer);
            Ok(())
        });
        self.handlers.push((name.to_owned(), handler));
        self
    }

    /// Registers `handler` for the action `name` as bytes in, bytes out, writing its answer
    /// straight into the host's buffer ([`Reply`]): no JSON, and no allocation or copy of the
    /// plugin's own. The fastest kind of action; callers use `call_bytes`.
    ///
    /// ```
    /// # use airlock_abi::{ActionError, Actions, Reply};
    /// # struct Echo;
    /// # fn register(actions: &mut Actions<Echo>) {
    /// actions.add_bytes_into("echo", |_: &Echo, input: &[u8], reply: &mut Reply<'_>| {
    ///     reply.extend_from_slice(input);
    ///     Ok::<_, ActionError>(())
    /// });
    /// # }
    /// ```
    pub fn add_bytes_into<F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        F: Fn(&P, &[u8], &mut Reply<'_>) -> Result<(), ActionError> + Send + Sync + 'static,
    {
        let handler: Handler<P> = Box::new(move |plugin, input, out| {
            handler(plugin, input, &mut Reply(out)).map_err(ActionError::into_plugin_error)
        });
        self.handlers.push((name.to_owned(), handler));
        self
    }
}

/// What a hook handler answers. What each variant means depends on the hook's dispatch mode,
/// which the host program defines:
///
/// | mode | `Continue(v)` | `Block(reason)` | `Swallow(reply)` |
/// |---|---|---|---|
/// | `chain` | `v` goes to the next plugin | failure (skipped) | failure (skipped) |
/// | `intercept` | `v` goes to the next plugin | failure (skipped) | stops the chain; `reply` is the answer |
/// | `guard` | allows (`v` ignored) | blocks; the rest do not run | failure (blocks: fail closed) |
/// | `filter` | `v` (a list) is intersected with the others | failure (skipped) | failure (skipped) |
/// | `collect` | `v` is collected | failure (skipped) | failure (skipped) |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookReply<T> {
    /// Pass on a value.
    Continue(T),
    /// Block the operation, saying why (guard hooks).
    Block(String),
    /// Consume the input; nothing after this plugin runs (intercept hooks).
    Swallow(String),
}

/// The registry a plugin fills in [`Plugin::hooks`].
pub struct Hooks<P> {
    pub(crate) handlers: Vec<(String, Handler<P>)>,
}

impl<P> fmt::Debug for Hooks<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.handlers.iter().map(|(name, _)| name))
            .finish()
    }
}

impl<P: 'static> Hooks<P> {
    pub(crate) fn new() -> Self {
        Self {
            handlers: Vec::new(),
        }
    }

    /// Registers `handler` for the hook `name`. Its input is deserialized from the host's JSON;
    /// its [`HookReply`] is serialized back. An `Err` is a failure of this plugin in this hook:
    /// the host skips it and reports it (a guard fails closed).
    pub fn add<I, O, F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&P, I) -> Result<HookReply<O>, ActionError> + Send + Sync + 'static,
    {
        let handler = typed_handler("hook", name, handler);
        self.handlers.push((name.to_owned(), handler));
        self
    }
}

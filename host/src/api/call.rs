//! [`Call`]: the one way the host program calls a plugin. It starts at [`Host::call`] (an
//! action by name), [`ActionHandle::call`] (an action resolved once) or [`Host::dispatch`]
//! (whoever claims a kind of request), takes what the call needs — on whose behalf, which
//! token cancels it, where its chunks go — and ends in [`Call::json`] or [`Call::bytes`], which
//! make it. Everything it sets travels in one frame pushed on the calling thread (or on the
//! thread a streamed call runs on).

use airlock_abi::manifest::PluginId;
use airlock_abi::wire::{CallerInfo, Principal};
use serde::Serialize;

use super::handle::ActionHandle;
use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::frame::cancel::CancelToken;
use crate::frame::stream::{self, Chunk};
use crate::frame::{self, Frame};
use crate::runtime::called::{envelope, fail, reply_bytes, Called};
use crate::runtime::outcome::Reply;
use crate::runtime::HostShared;

/// How a finished call's buffer is read into a reply (as JSON, or as bytes).
type ReadReply<T> = fn(&str, &str, Called, Vec<u8>) -> Result<Reply<T>, CallError>;

/// A call about to be made: set what it needs, then make it with [`Call::json`] or
/// [`Call::bytes`].
///
/// ```no_run
/// # let host = airlock::Host::builder().build().unwrap();
/// use airlock::{CancelToken, Principal, Reply};
/// let ada = Principal::new("ada", &["admin"]);
/// let stop = CancelToken::new();
/// let reply = host
///     .call("notes", "export")
///     .as_principal(&ada)
///     .cancel_on(&stop)
///     .on_chunk(|chunk| println!("{chunk:?}"))
///     .json(&serde_json::json!({"format": "csv"}))?;
/// if let Reply::Ok(done) = reply {
///     println!("{done}");
/// }
/// # Ok::<(), airlock::CallError>(())
/// ```
#[must_use = "a call is made by `.json(..)` or `.bytes(..)`"]
pub struct Call<'h, To = Action<'h>> {
    to: To,
    how: How<'h>,
}

/// What a call carries besides its address.
struct How<'h> {
    shared: &'h HostShared,
    principal: Option<&'h Principal>,
    cancel: Option<&'h CancelToken>,
    on_chunk: Option<Box<dyn FnMut(Chunk) + 'h>>,
}

/// A call addressed to an action: by name ([`Host::call`]) or through a handle
/// ([`ActionHandle::call`]).
pub struct Action<'h>(Address<'h>);

enum Address<'h> {
    Named { plugin: &'h str, action: &'h str },
    Handle(&'h ActionHandle<'h>),
}

/// A call addressed to the plugin that claims a kind of request ([`Host::dispatch`]).
pub struct Claim<'h> {
    kind: &'h str,
}

/// How a dispatched request ended: who handled it, after how many attempts, and its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatched<T = serde_json::Value> {
    /// The plugin holding the claim.
    pub holder: String,
    /// Its action that handles the kind.
    pub action: String,
    /// How many times it was called: 1, plus one per retry.
    pub attempts: u32,
    /// The last attempt's reply (an `error` after the retries ran out).
    pub reply: Reply<T>,
}

impl<To> std::fmt::Debug for Call<'_, To> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("principal", &self.how.principal)
            .field("cancellable", &self.how.cancel.is_some())
            .field("streamed", &self.how.on_chunk.is_some())
            .finish_non_exhaustive()
    }
}

impl<'h> Call<'h> {
    pub(super) fn named(shared: &'h HostShared, plugin: &'h str, action: &'h str) -> Self {
        Self::new(shared, Action(Address::Named { plugin, action }))
    }

    pub(super) fn handle(handle: &'h ActionHandle<'h>) -> Self {
        Self::new(handle.shared, Action(Address::Handle(handle)))
    }
}

impl<'h> Call<'h, Claim<'h>> {
    pub(super) fn claim(shared: &'h HostShared, kind: &'h str) -> Self {
        Self::new(shared, Claim { kind })
    }
}

impl<'h, To> Call<'h, To> {
    fn new(shared: &'h HostShared, to: To) -> Self {
        let how = How {
            shared,
            principal: None,
            cancel: None,
            on_chunk: None,
        };
        Self { to, how }
    }

    /// Calls on behalf of `principal` (a user id and roles, as this program defines them): the
    /// plugin's handler sees it in `ctx.caller()`, and the policy's permissions are checked
    /// against it. Without it, the host program itself is the caller.
    pub fn as_principal(mut self, principal: &'h Principal) -> Self {
        self.how.principal = Some(principal);
        self
    }

    /// Lets `token` cancel the call from any thread while it runs: the plugin sees
    /// `ctx.cancelled()` turn true, and so do the plugins it calls. A call whose token was
    /// cancelled before it returned ends [`CallErrorCode::Cancelled`] — its own outcome, not a
    /// fault — whatever the plugin answered, unless it ran on past its timeout and grace (then
    /// it is a fault and ends [`CallErrorCode::Timeout`]); a call with a token already
    /// cancelled is not made.
    pub fn cancel_on(mut self, token: &'h CancelToken) -> Self {
        self.how.cancel = Some(token);
        self
    }

    /// Takes the call as a stream: each chunk the action emits (`ctx.emit(..)`) is handed to
    /// `on_chunk` on this thread, in order, as it comes, and the final reply is returned. The
    /// call runs on a thread of its own meanwhile; it may get at most
    /// [`crate::call::STREAM_BUFFER`] chunks ahead of `on_chunk` and otherwise waits for it, so a slow
    /// consumer slows the plugin and memory stays bounded however long the stream. A panic in
    /// `on_chunk` cancels the call, waits for it to stop and unwinds here. Asked for from inside
    /// a call into a plugin (a service handler), the call is made on this thread, unstreamed
    /// (its chunks are discarded).
    pub fn on_chunk(mut self, on_chunk: impl FnMut(Chunk) + 'h) -> Self {
        self.how.on_chunk = Some(Box::new(on_chunk));
        self
    }
}

impl How<'_> {
    /// Makes `call` (the call into `plugin`'s `action`) in this call's frame: on this thread,
    /// or streamed on a thread of its own; cancelled before or during, it ends `cancelled`.
    #[inline]
    fn run<R: Send>(
        self,
        plugin: &str,
        action: &str,
        call: impl FnOnce() -> Result<R, CallError> + Send,
    ) -> Result<R, CallError> {
        if self.principal.is_none() && self.cancel.is_none() && self.on_chunk.is_none() {
            // The common call carries nothing: from inside a call, the host is its caller.
            let _host = frame::caller::host_call();
            return call();
        }
        let cancelled = || {
            Err(fail(
                plugin,
                action,
                CallErrorCode::Cancelled,
                format!("{plugin}.{action} was cancelled"),
            ))
        };
        let was_cancelled = || self.cancel.is_some_and(CancelToken::is_cancelled);
        if was_cancelled() {
            return cancelled();
        }
        let caller = match self.principal {
            Some(principal) => Some(CallerInfo::Host {
                principal: Some(principal.clone()),
            }),
            // From inside a call (a service handler of the program), the host is the caller.
            None => frame::in_call().then_some(CallerInfo::Host { principal: None }),
        };
        // From inside a call into a plugin, a stream is not started: on another thread the
        // call would lose this thread's cycle guards.
        let nested = || crate::sync::hazard::this_thread().is_some_and(|r| r.in_call());
        let answered = match self.on_chunk {
            Some(on_chunk) if !nested() => {
                let id = PluginId::new(plugin)
                    .map_err(|e| fail(plugin, action, CallErrorCode::NotFound, e))?;
                let token = self.cancel.cloned().unwrap_or_default();
                let frame = Frame {
                    caller,
                    cancel: Some(token.clone()),
                    ..Frame::default()
                };
                stream::streamed(&id, frame, &token, call, on_chunk).map_err(|e| {
                    fail(
                        plugin,
                        action,
                        CallErrorCode::HandlerError,
                        format!("no thread could be started for the streamed call: {e}"),
                    )
                })?
            }
            _ if caller.is_none() && self.cancel.is_none() => call(),
            _ => {
                let _frame = frame::enter(Frame {
                    caller,
                    cancel: self.cancel.cloned(),
                    ..Frame::default()
                });
                call()
            }
        };
        match answered {
            // A call that ran on past its timeout and grace is a fault, whoever cancelled it.
            Err(e) if e.code == CallErrorCode::Timeout => Err(e),
            _ if was_cancelled() => cancelled(),
            answered => answered,
        }
    }
}

impl<'h> Call<'h, Action<'h>> {
    /// Makes the call with `input` encoded as JSON; the reply's data is decoded from the
    /// action's JSON answer.
    ///
    /// # Errors
    ///
    /// A [`CallError`] when the call failed for a reason that is not the action's own (not
    /// loaded, a panic, a timeout, a capability or permission refused, cancelled…); the
    /// action's own error is `Ok(Reply::Error(..))`.
    pub fn json<T: Serialize + ?Sized>(self, input: &T) -> Result<Reply, CallError> {
        let (plugin, action) = self.to.names();
        let input = serde_json::to_vec(input)
            .map_err(|e| fail(plugin, action, CallErrorCode::BadInput, e.to_string()))?;
        self.json_encoded(&input)
    }

    /// [`Call::json`] with the input encoded already.
    pub(super) fn json_encoded(self, input: &[u8]) -> Result<Reply, CallError> {
        self.made(input, envelope)
    }

    /// Makes the call with JSON bytes the caller encoded, and answers the action's bytes
    /// undecoded. Empty bytes stand for `null` both ways: an action returning `()` answers
    /// nothing (no allocation on either side); read answers with [`airlock_abi::wire::parse`].
    ///
    /// # Errors
    ///
    /// As [`Call::json`].
    #[inline]
    pub fn bytes(self, input: &[u8]) -> Result<Reply<Vec<u8>>, CallError> {
        self.made(input, reply_bytes)
    }

    /// Makes the call with `input`, its answer read by `read`.
    #[inline]
    fn made<T: Send>(self, input: &[u8], read: ReadReply<T>) -> Result<Reply<T>, CallError> {
        let Self { to, how } = self;
        let (plugin, action) = to.names();
        let shared = how.shared;
        how.run(plugin, action, || {
            let mut out = Vec::new();
            let called = to.call_into(shared, input, &mut out)?;
            read(plugin, action, called, out)
        })
    }
}

impl Action<'_> {
    fn names(&self) -> (&str, &str) {
        match &self.0 {
            Address::Named { plugin, action } => (plugin, action),
            Address::Handle(handle) => (&handle.plugin, &handle.action),
        }
    }

    fn call_into(
        &self,
        shared: &HostShared,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Called, CallError> {
        match &self.0 {
            Address::Named { plugin, action } => shared.call_into(plugin, action, input, out),
            Address::Handle(handle) => handle.call_raw(input, out),
        }
    }
}

impl<'h> Call<'h, Claim<'h>> {
    /// Sends the request, encoded as JSON, to the plugin that claims its kind; an answer the
    /// handler marks retryable is retried as [`Host::dispatch`] says.
    ///
    /// # Errors
    ///
    /// `not_found` if no loaded plugin claims the kind; otherwise as [`Call::json`] (failures
    /// other than a retryable answer are not retried).
    pub fn json<T: Serialize + ?Sized>(self, input: &T) -> Result<Dispatched, CallError> {
        let input = serde_json::to_vec(input)
            .map_err(|e| fail("", self.to.kind, CallErrorCode::BadInput, e.to_string()))?;
        self.json_encoded(&input)
    }

    /// [`Call::json`] on a dispatch with the input encoded already.
    pub(super) fn json_encoded(self, input: &[u8]) -> Result<Dispatched, CallError> {
        self.retried(input, envelope)
    }

    /// [`Call::json`] with JSON bytes the caller encoded, answering the handler's bytes.
    ///
    /// # Errors
    ///
    /// As [`Call::json`].
    pub fn bytes(self, input: &[u8]) -> Result<Dispatched<Vec<u8>>, CallError> {
        self.retried(input, reply_bytes)
    }

    /// Calls the holder of the claim, retrying a retryable answer with its policy's backoff.
    fn retried<T: Send>(
        self,
        input: &[u8],
        read: ReadReply<T>,
    ) -> Result<Dispatched<T>, CallError> {
        let kind = self.to.kind;
        let how = self.how;
        let (holder, action, retry) = super::dispatch::claimed(how.shared, kind)?;
        let shared = how.shared;
        let (plugin, name) = (holder.as_str(), action.as_str());
        let (attempts, reply) = how.run(plugin, name, || {
            let mut out = Vec::new();
            let (attempts, called) = shared.call_retried(plugin, name, input, &retry, &mut out)?;
            Ok((attempts, read(plugin, name, called, out)?))
        })?;
        Ok(Dispatched {
            holder,
            action,
            attempts,
            reply,
        })
    }
}

impl Host {
    /// Starts a call of `action` of `plugin`; see [`Call`] for what it can carry, and
    /// [`Call::json`] and [`Call::bytes`] to make it.
    pub fn call<'h>(&'h self, plugin: &'h str, action: &'h str) -> Call<'h> {
        Call::named(&self.shared, plugin, action)
    }

    /// Starts a request of `kind` to the plugin that claims it (`"claims"` in its manifest).
    /// An answer the handler marks retryable (`ActionError::retryable`) is retried up to the
    /// holder's `dispatch_retries` times, the n-th retry after a delay between half and all of
    /// `min(dispatch_backoff_ms × 2ⁿ, dispatch_backoff_max_ms)`; the call goes through the
    /// holder's permissions like any other.
    pub fn dispatch<'h>(&'h self, kind: &'h str) -> Call<'h, Claim<'h>> {
        Call::claim(&self.shared, kind)
    }
}

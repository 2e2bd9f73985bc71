//! The async embedding API (feature `tokio`): [`AsyncHost`] wraps a [`Host`] for programs that
//! run on tokio. A call, a dispatch and an inbound HTTP request are futures; a streamed call is
//! a [`futures_core::Stream`] of its chunks. Each runs the blocking plugin call on the host's
//! call threads (`call_pool`), never on the runtime's worker threads, so a slow plugin holds
//! one call thread and no task. Dropping a future (or a stream) before it is done
//! cancels its call: the plugin sees `ctx.cancelled()`, and so do the plugins it calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use airlock_abi::wire::Principal;
use serde::Serialize;
use tokio::sync::mpsc;

use super::call::Dispatched;
use super::routes::{HttpIn, HttpOut};
use super::Host;
use crate::error::{CallError, CallErrorCode};
use crate::frame::cancel::CancelToken;
use crate::frame::stream::{Chunk, STREAM_BUFFER};
use crate::runtime::called::fail;
use crate::runtime::outcome::Reply;

/// A [`Host`] shared by the tasks of a tokio program: cheap to clone, and a [`Host`] itself
/// through `Deref` for everything that does not call a plugin (loading, reloads, the audit).
#[derive(Debug, Clone)]
pub struct AsyncHost {
    host: Arc<Host>,
}

impl From<Host> for AsyncHost {
    fn from(host: Host) -> Self {
        Self::new(Arc::new(host))
    }
}

impl std::ops::Deref for AsyncHost {
    type Target = Host;

    fn deref(&self) -> &Host {
        &self.host
    }
}

impl AsyncHost {
    /// Wraps a host the program shares.
    pub fn new(host: Arc<Host>) -> Self {
        Self { host }
    }

    /// The host, shared.
    pub fn shared(&self) -> &Arc<Host> {
        &self.host
    }

    /// Starts a call of `action` of `plugin` (as [`Host::call`]).
    pub fn call(&self, plugin: impl Into<String>, action: impl Into<String>) -> AsyncCall {
        AsyncCall {
            host: Arc::clone(&self.host),
            to: Named(plugin.into(), action.into()),
            principal: None,
        }
    }

    /// Starts a request to the plugin that claims `kind` (as [`Host::dispatch`]).
    pub fn dispatch(&self, kind: impl Into<String>) -> AsyncCall<Claimed> {
        AsyncCall {
            host: Arc::clone(&self.host),
            to: Claimed(kind.into()),
            principal: None,
        }
    }

    /// Serves a request for a plugin's route (as [`Host::handle_http`]). Dropped before it is
    /// answered, the route's call is cancelled.
    pub fn handle_http(&self, request: HttpIn) -> CallFuture<HttpOut> {
        let host = Arc::clone(&self.host);
        spawn(move |token| host.serve_http(&request, Some(&token)))
    }
}

/// The address of a call to an action: its plugin and name.
#[derive(Debug)]
pub struct Named(String, String);

/// The address of a dispatch: the kind of request.
#[derive(Debug)]
pub struct Claimed(String);

/// A call about to be made by an [`AsyncHost`]: set on whose behalf, then make it with
/// [`AsyncCall::json`], [`AsyncCall::bytes`] or [`AsyncCall::stream`].
#[derive(Debug)]
#[must_use = "a call is made by `.json(..)`, `.bytes(..)` or `.stream(..)`"]
pub struct AsyncCall<A = Named> {
    host: Arc<Host>,
    to: A,
    principal: Option<Principal>,
}

impl<A> AsyncCall<A> {
    /// Calls on behalf of `principal` (as [`crate::Call::as_principal`]).
    pub fn as_principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }
}

impl AsyncCall {
    /// Makes the call with `input` encoded as JSON (as [`crate::Call::json`]).
    pub fn json<T: Serialize + ?Sized>(self, input: &T) -> CallFuture<Result<Reply, CallError>> {
        let Named(plugin, action) = &self.to;
        match serde_json::to_vec(input) {
            Ok(input) => self.run(move |call| call.json_encoded(&input)),
            Err(e) => ready(Err(fail(
                plugin,
                action,
                CallErrorCode::BadInput,
                e.to_string(),
            ))),
        }
    }

    /// Makes the call with JSON bytes the caller encoded (as [`crate::Call::bytes`]).
    pub fn bytes(self, input: Vec<u8>) -> CallFuture<Result<Reply<Vec<u8>>, CallError>> {
        self.run(move |call| call.bytes(&input))
    }

    /// Makes the call as a stream, with JSON bytes the caller encoded: the stream yields the
    /// chunks the action emits, in order, then [`CallStream::reply`] answers its reply. The
    /// plugin may get at most [`crate::call::STREAM_BUFFER`] chunks ahead of the reader.
    pub fn stream(self, input: Vec<u8>) -> CallStream {
        let (sender, chunks) = mpsc::channel(STREAM_BUFFER);
        let reply = self.run(move |call| {
            call.on_chunk(move |chunk| {
                // A reader that stopped reading before the reply lets the rest go by.
                let _ = sender.blocking_send(chunk);
            })
            .bytes(&input)
        });
        CallStream { chunks, reply }
    }

    fn run<R: Send + 'static>(
        self,
        make: impl FnOnce(crate::Call<'_>) -> Result<R, CallError> + Send + 'static,
    ) -> CallFuture<Result<R, CallError>> {
        let Self {
            host,
            to: Named(plugin, action),
            principal,
        } = self;
        spawn(move |token| {
            let mut call = host.call(&plugin, &action).cancel_on(&token);
            if let Some(principal) = &principal {
                call = call.as_principal(principal);
            }
            make(call)
        })
    }
}

impl AsyncCall<Claimed> {
    /// Sends the request, encoded as JSON (as [`crate::Call::json`] on a dispatch).
    pub fn json<T: Serialize + ?Sized>(
        self,
        input: &T,
    ) -> CallFuture<Result<Dispatched, CallError>> {
        let Self {
            host,
            to: Claimed(kind),
            principal,
        } = self;
        let input = match serde_json::to_vec(input) {
            Ok(input) => input,
            Err(e) => return ready(Err(fail("", &kind, CallErrorCode::BadInput, e.to_string()))),
        };
        spawn(move |token| {
            let mut call = host.dispatch(&kind).cancel_on(&token);
            if let Some(principal) = &principal {
                call = call.as_principal(principal);
            }
            call.json_encoded(&input)
        })
    }
}

/// A call running on a call thread: its output when awaited; dropped before that, the
/// call is cancelled (it then ends on its own thread, at the latest at its timeout).
#[derive(Debug)]
#[must_use = "a dropped call future cancels its call"]
pub struct CallFuture<R> {
    state: State<R>,
    /// Armed until the call is done: dropping it cancels the call.
    token: Option<CancelToken>,
}

#[derive(Debug)]
enum State<R> {
    Running(tokio::sync::oneshot::Receiver<std::thread::Result<R>>),
    Ready(Option<R>),
}

/// Runs `call` on a call thread with a token the future cancels when dropped, in the span
/// current where it was asked for (so that its call span is a child of the asker's).
fn spawn<R: Send + 'static>(call: impl FnOnce(CancelToken) -> R + Send + 'static) -> CallFuture<R> {
    let token = CancelToken::new();
    let theirs = token.clone();
    let span = crate::frame::trace::carried();
    CallFuture {
        state: State::Running({
            let (done, running) = tokio::sync::oneshot::channel();
            super::call_pool::run(Box::new(move || {
                let _in = span.enter();
                let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    move || call(theirs),
                )));
            }));
            running
        }),
        token: Some(token),
    }
}

fn ready<R>(output: R) -> CallFuture<R> {
    CallFuture {
        state: State::Ready(Some(output)),
        token: None,
    }
}

// Nothing in it is pinned: the output is moved out, never borrowed across polls.
impl<R> Unpin for CallFuture<R> {}

impl<R: Abandoned> Future for CallFuture<R> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = &mut *self;
        let output = match &mut this.state {
            State::Ready(output) => output.take(),
            State::Running(task) => match Pin::new(task).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(Ok(output))) => Some(output),
                // The call's panics are contained; one here is the program's own
                // (`on_chunk`, an authentication hook): it goes on in the awaiting task.
                Poll::Ready(Ok(Err(panic))) => std::panic::resume_unwind(panic),
                Poll::Ready(Err(_)) => Some(R::abandoned()),
            },
        };
        this.token = None;
        Poll::Ready(output.unwrap_or_else(R::abandoned))
    }
}

/// What a call answers when the runtime shut down before it ended (or when polled again after
/// it answered).
pub trait Abandoned {
    /// The answer.
    fn abandoned() -> Self;
}

impl<T> Abandoned for Result<T, CallError> {
    fn abandoned() -> Self {
        Err(fail(
            "",
            "",
            CallErrorCode::Cancelled,
            "the runtime shut down before the call ended".to_owned(),
        ))
    }
}

impl Abandoned for HttpOut {
    fn abandoned() -> Self {
        HttpOut::text(503, "", "the server is shutting down")
    }
}

impl<R> Drop for CallFuture<R> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
    }
}

/// A streamed call ([`AsyncCall::stream`]): the chunks the action emits, as they come, then
/// its reply. Dropped before the reply, the call is cancelled.
#[derive(Debug)]
#[must_use = "a dropped stream cancels its call"]
pub struct CallStream {
    chunks: mpsc::Receiver<Chunk>,
    reply: CallFuture<Result<Reply<Vec<u8>>, CallError>>,
}

impl futures_core::Stream for CallStream {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.chunks.poll_recv(cx)
    }
}

impl CallStream {
    /// The call's reply, once it is done; chunks not read yet are let go.
    ///
    /// # Errors
    ///
    /// As [`crate::Call::bytes`].
    pub async fn reply(self) -> Result<Reply<Vec<u8>>, CallError> {
        let Self { chunks, reply } = self;
        drop(chunks);
        reply.await
    }
}

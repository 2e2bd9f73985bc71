//! The plugin's door back into the host: the [`Context`] it is created with, and the typed
//! wrappers over the services it reaches through it, one file per family of requests (`kv`,
//! `events`, `timers`, `secrets`, `plugins`, `http`, `log`, and the call being served). Each
//! request is checked by the host against the plugin's grants; a miss is
//! [`ContextError::CapabilityViolation`].

mod call;
mod events;
mod fast;
mod http;
mod http_stream;
mod kv;
mod log;
mod peers;
mod pending;
mod plugins;
mod secrets;
mod timers;

pub use self::events::Events;
pub use self::http::{Http, HttpRequest, HttpResponse};
pub use self::http_stream::HttpStream;
pub use self::kv::{Kv, KvBatch};
pub use self::log::Level;
pub use self::peers::{Dispatched, Peers};
pub use self::plugins::Plugins;
pub use self::secrets::Secrets;
pub use self::timers::Timers;

use abi_stable::std_types::{RResult, RSlice, RStr};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ContextError;
use crate::ffi::HostContext;
use crate::host_fns::HostFns;
use crate::plugin::Snapshot;
use crate::wire::Request;

/// The plugin's door back into the host: a token checked on every use, and revoked when the
/// plugin is torn down. After revocation every method returns [`ContextError::Revoked`].
///
/// Calls go through the host's register-returning function table when the host hands one out
/// (asked once per host, its layout compared with this library's), and through the frozen
/// slots of its vtable otherwise (an older host, an isolated plugin's worker): the answers are
/// the same.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    raw: HostContext,
    fns: Option<&'static HostFns>,
}

impl Context {
    /// Wraps the raw context the host passed in. Used by `export_plugin!`.
    #[doc(hidden)]
    pub fn from_raw(raw: HostContext) -> Self {
        Self {
            raw,
            fns: crate::export::host_fns(raw),
        }
    }

    /// The same context on the vtable's frozen slots only: for the benchmarks' comparison and
    /// the tests of the fallback. Not public API.
    #[doc(hidden)]
    pub fn on_frozen_slots(self) -> Self {
        Self { fns: None, ..self }
    }

    /// The host's function table this context calls through, if any. Not public API.
    #[doc(hidden)]
    pub fn host_fns(&self) -> Option<&'static HostFns> {
        self.fns
    }

    /// The raw token and vtable.
    pub fn raw(&self) -> HostContext {
        self.raw
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
    /// hot reload of a plugin that implements [`Plugin::snapshot`](crate::Plugin::snapshot).
    /// `None` on a fresh start. Needs no capability; the state is given once.
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
        if let Some(fns) = self.fns {
            return fast::request(
                fns,
                self.raw.token,
                (service, operation, payload),
                |bytes| Ok(bytes.to_vec()),
            );
        }
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
        if let Some(fns) = self.fns {
            return fast::service::<O>(fns, self.raw.token, input);
        }
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

    /// The plugin's own key/value namespace (capability `kv`).
    pub fn kv(&self) -> Kv<'_> {
        Kv {
            ctx: self,
            scope: None,
        }
    }

    /// Event topics (capabilities `events.publish:<glob>` and `events.subscribe:<glob>`).
    pub fn events(&self) -> Events<'_> {
        Events { ctx: self }
    }

    /// Interval and cron jobs run by the host (capability `timers`).
    pub fn timers(&self) -> Timers<'_> {
        Timers { ctx: self }
    }

    /// Secrets the operator provides (capability `secrets:<name>`).
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets { ctx: self }
    }

    /// Actions of other plugins (capability `plugins.call:<id>`).
    pub fn plugins(&self) -> Plugins<'_> {
        Plugins { ctx: self }
    }

    /// Outbound HTTP (capability `http.outbound:<host glob>`), made by the host for the
    /// plugin under the operator's policy.
    pub fn http(&self) -> Http<'_> {
        Http { ctx: self }
    }

    /// `request` with a JSON body and a JSON answer: what the typed service wrappers send.
    fn call_service<R: DeserializeOwned>(
        &self,
        request: Request,
        body: &impl Serialize,
    ) -> Result<R, ContextError> {
        let body = encode(body)?;
        match self.fns {
            Some(fns) => fast::request(
                fns,
                self.raw.token,
                (request.service(), request.operation(), &body),
                decode,
            ),
            None => decode(&self.request(request.service(), request.operation(), &body)?),
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ContextError> {
    serde_json::to_vec(value).map_err(|e| ContextError::BadRequest(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ContextError> {
    serde_json::from_slice(bytes).map_err(|e| ContextError::Decode(e.to_string()))
}

//! The payloads of host service requests ([`crate::abi::HostVtable::request`]): one service name, one
//! operation name and a JSON body each. Shared by the plugin-side wrappers and the host, so the
//! two cannot drift apart.

mod call;
mod payloads;
mod pending;
mod registry;

pub use self::call::{CallErrorCode, CallerInfo, Principal};
pub use self::payloads::{
    Call, CompareAndSet, ConfigReport, CronJob, Envelope, Every, Expected, HttpAnswer, HttpHead,
    HttpStreamHead, HttpStreamId, Key, KeyValue, KvEntry, KvScope, LogLine, Name, Pattern, Prefix,
    Publish, RunInfo, Swapped, Write, Writes, MAX_HTTP_CHUNK, MAX_LOG_FIELDS,
};
pub use self::pending::{Deferral, Resolution, MAX_PENDING_DESCRIPTION, MAX_PENDING_KEY};
pub use self::registry::{
    Dispatch, Dispatched, HookBlocked, HookRun, HookRunFailure, HookRunOutcome, HookSwallowed,
    PeerAction, PeerClaim, PeerHook, PeerInfo, Shutdown,
};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses the JSON of an answer or an input: empty bytes are `null` (an action that returns
/// `()` answers nothing, and a caller may send nothing to an action that takes `()`).
///
/// # Errors
///
/// The bytes are not JSON of type `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    serde_json::from_slice(if bytes.is_empty() { b"null" } else { bytes })
}

/// Every request a plugin makes of the host through [`crate::abi::HostVtable::request`]. Its
/// service and operation names are spelled here and nowhere else: the plugin-side wrappers
/// name it, the host registers one typed row per request in its registry, and a name that is
/// not one of these (nor an operation the embedding program offers) is answered `UNSUPPORTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// `kv get` ([`Key`]): capability `kv`.
    KvGet,
    /// `kv set` ([`KeyValue`]): capability `kv`.
    KvSet,
    /// `kv delete` ([`Key`]): capability `kv`.
    KvDelete,
    /// `kv keys` ([`Prefix`]): capability `kv`.
    KvKeys,
    /// `kv entry` ([`Key`]): a value with its version; capability `kv`.
    KvEntry,
    /// `kv list` ([`Prefix`]): the entries under a prefix; capability `kv`.
    KvList,
    /// `kv compare_and_set` ([`CompareAndSet`]): capability `kv`.
    KvCompareAndSet,
    /// `kv write` ([`Writes`]): several writes, all or none; capability `kv`.
    KvWrite,
    /// `events publish` ([`Publish`]): capability `events.publish:<topic>`.
    EventsPublish,
    /// `events subscribe` ([`Pattern`]): capability `events.subscribe:<pattern>`.
    EventsSubscribe,
    /// `events unsubscribe` ([`Pattern`]): capability `events.subscribe:<pattern>`.
    EventsUnsubscribe,
    /// `timers every` ([`Every`]): capability `timers`.
    TimersEvery,
    /// `timers cancel` ([`Name`]): capability `timers`.
    TimersCancel,
    /// `timers cron` ([`CronJob`]): capability `timers`.
    TimersCron,
    /// `secrets get` ([`Name`]): capability `secrets:<name>`.
    SecretsGet,
    /// `plugins call` ([`Call`]): capability `plugins.call:<id>`.
    PluginsCall,
    /// `http request` ([`HttpHead`] and the body, [`frame`]d): capability
    /// `http.outbound:<host>`.
    HttpRequest,
    /// `http stream_open` ([`HttpHead`] and the body, [`frame`]d, as `http request`): the
    /// request made and its redirects followed as `http request` does, and the last response's
    /// body left to read in chunks; answers an [`HttpStreamHead`]. Capability
    /// `http.outbound:<host>`.
    HttpStreamOpen,
    /// `http stream_next` ([`HttpStreamId`]): the next chunk of an open stream's body, as it
    /// arrived (at most [`MAX_HTTP_CHUNK`] bytes); empty at its end. Capability
    /// `http.outbound:<host>` (a grant revoked meanwhile ends the stream).
    HttpStreamNext,
    /// `http stream_close` ([`HttpStreamId`]): closes an open stream before its end (`true`
    /// if it was open); no capability.
    HttpStreamClose,
    /// `log write` ([`LogLine`]): a log line with fields; no capability.
    LogWrite,
    /// `reload handover` (no body): the state the previous generation handed over; no
    /// capability.
    Handover,
    /// `context caller` (no body): who asked for the call the plugin is serving now
    /// ([`CallerInfo`]); no capability.
    ContextCaller,
    /// `context cancelled` (no body): whether the call the plugin is serving was cancelled
    /// (`true`/`false`); no capability.
    ContextCancelled,
    /// `stream emit` (a [`CHUNK_JSON`] or [`CHUNK_BYTES`] byte, then the chunk): a partial
    /// result of the call being served, for a caller taking it as a stream (`true`; `false`
    /// when the call is not streamed and the chunk was discarded); no capability.
    StreamEmit,
    /// `plugins list` (no body): the plugins the host runs, each a [`PeerInfo`]; capability
    /// `plugins.list`.
    PluginsList,
    /// `plugins dispatch` ([`Dispatch`]): the holder of a claimed kind called, with its
    /// policy's retries; answers [`Dispatched`]. Capability `dispatch:<kind>`.
    PluginsDispatch,
    /// `hooks run` ([`HookRun`]): a hook point run with the mode the host program defined it
    /// with; answers a [`HookRunOutcome`]. Capability `hooks.run:<name>`.
    HooksRun,
    /// `host shutdown` ([`Shutdown`]): a request that the host program shut down, handed to
    /// the program (`null`). Capability `host.control`.
    HostShutdown,
    /// `pending resolve` ([`Resolution`]): settles one of the plugin's own pending answers,
    /// named by the key it answered pending with (`true`). No capability: a plugin reaches only
    /// its own entries.
    PendingResolve,
    /// `context functions` (no body): where the host's register-returning function table is,
    /// as two little-endian `u64` addresses: the host's `&'static HostFns` and the
    /// `&'static TypeLayout` it was built with, which the plugin checks with abi_stable's layout
    /// checker before it uses the table. No capability. A host that predates the table, or one
    /// that cannot hand it out (an isolated plugin's worker), answers `unsupported`, and the
    /// plugin keeps the vtable's frozen slots.
    ContextFunctions,
}

/// The first byte of a [`Request::StreamEmit`] body whose chunk is JSON.
pub const CHUNK_JSON: u8 = 0;
/// The first byte of a [`Request::StreamEmit`] body whose chunk is bytes.
pub const CHUNK_BYTES: u8 = 1;

impl Request {
    /// Every request, for tables and tests.
    pub const ALL: [Self; 31] = [
        Self::KvGet,
        Self::KvSet,
        Self::KvDelete,
        Self::KvKeys,
        Self::KvEntry,
        Self::KvList,
        Self::KvCompareAndSet,
        Self::KvWrite,
        Self::EventsPublish,
        Self::EventsSubscribe,
        Self::EventsUnsubscribe,
        Self::TimersEvery,
        Self::TimersCancel,
        Self::TimersCron,
        Self::SecretsGet,
        Self::PluginsCall,
        Self::HttpRequest,
        Self::HttpStreamOpen,
        Self::HttpStreamNext,
        Self::HttpStreamClose,
        Self::LogWrite,
        Self::Handover,
        Self::ContextCaller,
        Self::ContextCancelled,
        Self::StreamEmit,
        Self::PluginsList,
        Self::PluginsDispatch,
        Self::HooksRun,
        Self::HostShutdown,
        Self::PendingResolve,
        Self::ContextFunctions,
    ];

    /// The service name on the wire.
    pub const fn service(self) -> &'static str {
        match self {
            Self::KvGet
            | Self::KvSet
            | Self::KvDelete
            | Self::KvKeys
            | Self::KvEntry
            | Self::KvList
            | Self::KvCompareAndSet
            | Self::KvWrite => "kv",
            Self::EventsPublish | Self::EventsSubscribe | Self::EventsUnsubscribe => "events",
            Self::TimersEvery | Self::TimersCancel | Self::TimersCron => "timers",
            Self::SecretsGet => "secrets",
            Self::PluginsCall | Self::PluginsList | Self::PluginsDispatch => "plugins",
            Self::HooksRun => "hooks",
            Self::HostShutdown => "host",
            Self::HttpRequest
            | Self::HttpStreamOpen
            | Self::HttpStreamNext
            | Self::HttpStreamClose => "http",
            Self::LogWrite => "log",
            Self::Handover => "reload",
            Self::ContextCaller | Self::ContextCancelled | Self::ContextFunctions => "context",
            Self::StreamEmit => "stream",
            Self::PendingResolve => "pending",
        }
    }

    /// The operation name on the wire.
    pub const fn operation(self) -> &'static str {
        match self {
            Self::KvGet | Self::SecretsGet => "get",
            Self::KvSet => "set",
            Self::KvDelete => "delete",
            Self::KvKeys => "keys",
            Self::KvEntry => "entry",
            Self::KvList => "list",
            Self::KvCompareAndSet => "compare_and_set",
            Self::KvWrite => "write",
            Self::EventsPublish => "publish",
            Self::EventsSubscribe => "subscribe",
            Self::EventsUnsubscribe => "unsubscribe",
            Self::TimersEvery => "every",
            Self::TimersCancel => "cancel",
            Self::TimersCron => "cron",
            Self::PluginsCall => "call",
            Self::HttpRequest => "request",
            Self::HttpStreamOpen => "stream_open",
            Self::HttpStreamNext => "stream_next",
            Self::HttpStreamClose => "stream_close",
            Self::LogWrite => "write",
            Self::Handover => "handover",
            Self::ContextCaller => "caller",
            Self::ContextCancelled => "cancelled",
            Self::ContextFunctions => "functions",
            Self::StreamEmit => "emit",
            Self::PluginsList => "list",
            Self::PluginsDispatch => "dispatch",
            Self::HooksRun => "run",
            Self::HostShutdown => "shutdown",
            Self::PendingResolve => "resolve",
        }
    }

    /// The request with these names, if there is one.
    pub fn parse(service: &str, operation: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.service() == service && r.operation() == operation)
    }
}

/// Whether `method` is an HTTP method token (RFC 9110: one or more of `!#$%&'*+-.^_`|~`,
/// digits and letters). Anything else — a space, a line break — would let the method write
/// a second request, or another host, into the request line; both sides refuse it.
pub fn is_http_token(method: &str) -> bool {
    !method.is_empty()
        && method.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// A JSON head and a body of bytes in one payload: the head's length (4 bytes, little-endian),
/// the head, then the body as it is (`http request` and its answer: bodies are bytes, and are
/// not encoded).
///
/// # Errors
///
/// The head cannot be encoded.
pub fn frame(head: &impl Serialize, body: &[u8]) -> serde_json::Result<Vec<u8>> {
    let head = serde_json::to_vec(head)?;
    let len = u32::try_from(head.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + head.len() + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Ok(out)
}

/// The head and the body of a [`frame`]d payload.
///
/// # Errors
///
/// The payload is cut short or its head is not JSON of type `T`.
pub fn unframe<T: DeserializeOwned>(payload: &[u8]) -> Result<(T, &[u8]), String> {
    let (len, rest) = payload
        .split_first_chunk::<4>()
        .ok_or("the payload has no head")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        return Err("the payload's head is cut short".to_owned());
    }
    let (head, body) = rest.split_at(len);
    let head = serde_json::from_slice(head).map_err(|e| format!("the payload's head: {e}"))?;
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn an_envelope_reads_and_writes_the_result_envelopes_json() {
        let ok = serde_json::json!({"status": "ok", "data": {"n": 3}});
        let answer: Envelope<serde_json::Value> = serde_json::from_value(ok.clone()).expect("ok");
        assert_eq!(answer, Envelope::Ok(serde_json::json!({"n": 3})));
        assert_eq!(serde_json::to_value(&answer).expect("json"), ok);
        let error: Envelope<u32> =
            serde_json::from_value(serde_json::json!({"status": "error", "data": "no"}))
                .expect("error");
        assert_eq!(Result::from(error), Err::<u32, _>("no".to_owned()));
        assert!(
            serde_json::from_value::<Envelope<u32>>(serde_json::json!({"status": "maybe"}))
                .is_err(),
            "an unknown status is not read as either"
        );
    }

    #[test]
    fn every_request_has_its_own_names_and_parses_back() {
        let mut seen = std::collections::BTreeSet::new();
        for request in Request::ALL {
            assert!(
                seen.insert((request.service(), request.operation())),
                "{request:?} shares its names"
            );
            assert_eq!(
                Request::parse(request.service(), request.operation()),
                Some(request)
            );
        }
        assert_eq!(Request::parse("kv", "drop"), None);
    }

    #[test]
    fn an_unscoped_kv_request_is_what_it_was_and_an_older_host_refuses_a_scoped_one() {
        /// `kv get`'s body as a host that predates scopes reads it.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[expect(dead_code, reason = "only decoded")]
        struct OldKey {
            key: String,
        }
        let plain = Key {
            key: "k".to_owned(),
            scope: None,
        };
        let bytes = serde_json::to_vec(&plain).expect("json");
        assert_eq!(bytes, br#"{"key":"k"}"#);
        assert!(serde_json::from_slice::<OldKey>(&bytes).is_ok());
        let scoped = Key {
            key: "k".to_owned(),
            scope: Some(KvScope {
                kind: "project".to_owned(),
                id: "p1".to_owned(),
            }),
        };
        let bytes = serde_json::to_vec(&scoped).expect("json");
        let refused = serde_json::from_slice::<OldKey>(&bytes).expect_err("unknown field");
        assert!(
            refused.to_string().contains("unknown field `scope`"),
            "{refused}"
        );
        // And this side reads what an older plugin sends.
        let old: Writes = serde_json::from_slice(br#"{"writes":[]}"#).expect("decodes");
        assert_eq!(old.scope, None);
    }

    #[test]
    fn only_http_tokens_are_methods() {
        for good in ["GET", "POST", "PROPFIND", "M-SEARCH", "x~y!"] {
            assert!(is_http_token(good), "{good}");
        }
        for bad in [
            "",
            "GET /x HTTP/1.1\r\nHost: admin.internal\r\n\r\nGET",
            "GET ",
            "GE\nT",
            "G\u{e9}T",
            "GET\0",
            "(GET)",
        ] {
            assert!(!is_http_token(bad), "{bad:?}");
        }
    }
}

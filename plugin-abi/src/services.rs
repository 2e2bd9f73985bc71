//! Typed wrappers over the host services a [`Context`] reaches: key/value store, events,
//! timers, secrets, and other plugins' actions. Each call is checked by the host against the
//! plugin's grants; a miss is [`ContextError::CapabilityViolation`].

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::plugin::{Context, ContextError};
use crate::wire::{self, Expected, KvEntry, Request, Swapped};

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ContextError> {
    serde_json::to_vec(value).map_err(|e| ContextError::BadRequest(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ContextError> {
    serde_json::from_slice(bytes).map_err(|e| ContextError::Decode(e.to_string()))
}

impl Context {
    fn call_service<R: DeserializeOwned>(
        &self,
        request: Request,
        body: &impl Serialize,
    ) -> Result<R, ContextError> {
        decode(&self.request(request.service(), request.operation(), &encode(body)?)?)
    }

    /// The plugin's own key/value namespace (capability `kv`).
    pub fn kv(&self) -> Kv<'_> {
        Kv { ctx: self }
    }

    /// Event topics (capabilities `events.publish:<glob>` and `events.subscribe:<glob>`).
    pub fn events(&self) -> Events<'_> {
        Events { ctx: self }
    }

    /// Interval jobs run by the host (capability `timers`).
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
}

/// Outbound HTTP, made by the host: the host checks the URL's host against the plugin's
/// `http.outbound` grants, its scheme (https unless the policy allows http for that host) and
/// every address it resolves to (no loopback, private, link-local or multicast address unless
/// the policy allows the range), connects to the address it checked, follows redirects
/// checking each hop, and caps time and body size. Every call leaves an audit record.
#[derive(Debug, Clone, Copy)]
pub struct Http<'c> {
    ctx: &'c Context,
}

impl Http<'_> {
    /// `GET url`.
    ///
    /// # Errors
    ///
    /// See [`Http::send`].
    pub fn get(&self, url: &str) -> Result<HttpResponse, ContextError> {
        self.send(&HttpRequest::new("GET", url))
    }

    /// Sends `request`; any status (`404` too) is a response.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] for a host no grant covers;
    /// [`ContextError::Refused`] for a scheme, an address or a redirect the policy refuses;
    /// [`ContextError::Unreachable`] when the connection fails, the time runs out or the body
    /// is over its limit; `BadRequest` for a URL that does not parse.
    pub fn send(&self, request: &HttpRequest) -> Result<HttpResponse, ContextError> {
        let payload = wire::frame(&request.head, &request.body)
            .map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let answer = self.ctx.request(
            Request::HttpRequest.service(),
            Request::HttpRequest.operation(),
            &payload,
        )?;
        let (head, body) =
            wire::unframe::<wire::HttpAnswer>(&answer).map_err(ContextError::Decode)?;
        Ok(HttpResponse {
            status: head.status,
            headers: head.headers,
            body: body.to_vec(),
        })
    }
}

/// An HTTP request for [`Http::send`].
#[derive(Debug, Clone)]
pub struct HttpRequest {
    head: wire::HttpHead,
    body: Vec<u8>,
}

impl HttpRequest {
    /// `method url`, no headers, no body.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            head: wire::HttpHead {
                method: method.to_owned(),
                url: url.to_owned(),
                headers: Vec::new(),
                credential: None,
            },
            body: Vec::new(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Has the host attach the credential `name` (capability `secrets:<name>`): a secret the
    /// operator made usable, not readable — the host sends it as the header the operator chose,
    /// to the hosts the operator named (not on a redirect elsewhere), and the plugin never
    /// sees it.
    #[must_use]
    pub fn credential(mut self, name: &str) -> Self {
        self.head.credential = Some(name.to_owned());
        self
    }

    /// Sets the body (bytes).
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    ///
    /// # Errors
    ///
    /// `BadRequest` if `value` cannot be encoded.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Self, ContextError> {
        let body = encode(value)?;
        Ok(self.header("content-type", "application/json").body(body))
    }
}

/// The response to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (after the redirects the host followed).
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, as bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// `Decode` if it is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ContextError> {
        decode(&self.body)
    }
}

/// The plugin's key/value namespace. Values are JSON; writes are durable when they return.
#[derive(Debug, Clone, Copy)]
pub struct Kv<'c> {
    ctx: &'c Context,
}

impl Kv<'_> {
    /// The value of `key`, if set.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host, or `Decode` if the stored value does not fit `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ContextError> {
        self.ctx.call_service(
            Request::KvGet,
            &wire::Key {
                key: key.to_owned(),
            },
        )
    }

    /// Sets `key` to `value`; durable on disk when it returns.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host (e.g. `BadRequest` for a key over the size limit).
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> Result<(), ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::KvSet,
            &wire::KeyValue {
                key: key.to_owned(),
                value,
            },
        )
    }

    /// Removes `key`; true if it was set.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn delete(&self, key: &str) -> Result<bool, ContextError> {
        self.ctx.call_service(
            Request::KvDelete,
            &wire::Key {
                key: key.to_owned(),
            },
        )
    }

    /// The keys starting with `prefix`, sorted.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>, ContextError> {
        self.ctx.call_service(
            Request::KvKeys,
            &wire::Prefix {
                prefix: prefix.to_owned(),
            },
        )
    }
}

impl Kv<'_> {
    /// The value of `key` with its version, if set: the version to pass to
    /// [`Kv::compare_and_set`] with [`Expected::Version`].
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host, or `Decode` if the stored value does not fit `T`.
    pub fn entry<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<KvEntry<T>>, ContextError> {
        self.ctx.call_service(
            Request::KvEntry,
            &wire::Key {
                key: key.to_owned(),
            },
        )
    }

    /// The entries whose keys start with `prefix` (key, value, version), sorted by key; at most
    /// 10,000 of them.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host, or `Decode` if a stored value does not fit `T`.
    pub fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<KvEntry<T>>, ContextError> {
        self.ctx.call_service(
            Request::KvList,
            &wire::Prefix {
                prefix: prefix.to_owned(),
            },
        )
    }

    /// Sets `key` to `value` only if it holds what is `expected` (nothing, the value of a
    /// version read earlier, or a value), in one step no other write can come between; durable
    /// on disk when it returns. Whether it wrote, and the key's version now.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn compare_and_set<T: Serialize>(
        &self,
        key: &str,
        expected: Expected,
        value: &T,
    ) -> Result<Swapped, ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::KvCompareAndSet,
            &wire::CompareAndSet {
                key: key.to_owned(),
                expected,
                value,
            },
        )
    }

    /// Makes the batch's writes together: all of them are durable on disk when it returns, or
    /// none was made. The version they share.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host (e.g. `BadRequest` for a key or value over its limit,
    /// and then nothing was written).
    pub fn write(&self, batch: KvBatch) -> Result<u64, ContextError> {
        self.ctx.call_service(
            Request::KvWrite,
            &wire::Writes {
                writes: batch.writes,
            },
        )
    }
}

/// Writes to make together with [`Kv::write`]: all or none.
#[derive(Debug, Clone, Default)]
pub struct KvBatch {
    writes: Vec<wire::Write>,
}

impl KvBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds setting `key` to `value`.
    ///
    /// # Errors
    ///
    /// `BadRequest` if `value` cannot be encoded as JSON.
    pub fn set<T: Serialize>(mut self, key: &str, value: &T) -> Result<Self, ContextError> {
        let value =
            serde_json::to_value(value).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.writes.push(wire::Write::Set {
            key: key.to_owned(),
            value,
        });
        Ok(self)
    }

    /// Adds removing `key`.
    #[must_use]
    pub fn delete(mut self, key: &str) -> Self {
        self.writes.push(wire::Write::Delete {
            key: key.to_owned(),
        });
        self
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Event topics.
#[derive(Debug, Clone, Copy)]
pub struct Events<'c> {
    ctx: &'c Context,
}

impl Events<'_> {
    /// Publishes `payload` on `topic`; returns how many subscriptions it went to. Delivery is
    /// asynchronous, on host threads.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] unless `events.publish:<glob>` covers the topic.
    pub fn publish<T: Serialize>(&self, topic: &str, payload: &T) -> Result<usize, ContextError> {
        let payload =
            serde_json::to_value(payload).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.ctx.call_service(
            Request::EventsPublish,
            &wire::Publish {
                topic: topic.to_owned(),
                payload,
            },
        )
    }

    /// Subscribes to topics matching `pattern`; events arrive in `Plugin::on_event`. The host
    /// owns the subscription and removes it when the plugin is torn down.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] unless `events.subscribe:<glob>` covers the pattern.
    pub fn subscribe(&self, pattern: &str) -> Result<(), ContextError> {
        self.ctx.call_service(
            Request::EventsSubscribe,
            &wire::Pattern {
                pattern: pattern.to_owned(),
            },
        )
    }

    /// Removes a subscription made with the same pattern; true if there was one.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn unsubscribe(&self, pattern: &str) -> Result<bool, ContextError> {
        self.ctx.call_service(
            Request::EventsUnsubscribe,
            &wire::Pattern {
                pattern: pattern.to_owned(),
            },
        )
    }
}

/// Interval jobs.
#[derive(Debug, Clone, Copy)]
pub struct Timers<'c> {
    ctx: &'c Context,
}

impl Timers<'_> {
    /// Runs `Plugin::on_job` (by default `on_timer(name)`) every `interval` (the gap between the
    /// end of one run and the start of the next, so a slow job never piles up). The host
    /// cancels every job when the plugin is torn down.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `timers`; `BadRequest` if the plugin
    /// already has a job of this name (cancel it first to change it).
    pub fn every(&self, name: &str, interval: Duration) -> Result<(), ContextError> {
        let interval_ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.ctx.call_service(
            Request::TimersEvery,
            &wire::Every {
                name: name.to_owned(),
                interval_ms,
            },
        )
    }

    /// Cancels the job `name`; true if there was one.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn cancel(&self, name: &str) -> Result<bool, ContextError> {
        self.ctx.call_service(
            Request::TimersCancel,
            &wire::Name {
                name: name.to_owned(),
            },
        )
    }

    /// Runs `Plugin::on_job` (by default `on_timer(name)`) whenever the 5-field cron
    /// `expression` matches, in UTC: minute, hour, day of month, month, day of week
    /// (`*/15 * * * *`, `0 9 * * MON-FRI`). A run still going when the next is due makes that
    /// one skipped, never overlapped. The host cancels every job when the plugin is torn down.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `timers`; `BadRequest` for an expression
    /// that is not 5 valid fields or a name the plugin already uses.
    pub fn cron(&self, name: &str, expression: &str) -> Result<(), ContextError> {
        self.ctx.call_service(
            Request::TimersCron,
            &wire::CronJob {
                name: name.to_owned(),
                expression: expression.to_owned(),
            },
        )
    }
}

/// Operator-provided secrets.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'c> {
    ctx: &'c Context,
}

impl Secrets<'_> {
    /// The secret `name`. Never logged by the host.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `secrets:<name>`; `BadRequest` if the
    /// operator did not provide it.
    pub fn get(&self, name: &str) -> Result<String, ContextError> {
        self.ctx.call_service(
            Request::SecretsGet,
            &wire::Name {
                name: name.to_owned(),
            },
        )
    }
}

/// Other plugins' actions.
#[derive(Debug, Clone, Copy)]
pub struct Plugins<'c> {
    ctx: &'c Context,
}

impl Plugins<'_> {
    /// Calls `action` of `plugin`; the outer result is the infrastructure (capability, not
    /// found, panic…), the inner one the action's own `ok`/`error` envelope.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `plugins.call:<plugin>`;
    /// [`ContextError::Call`] if the call failed in the host or the other plugin.
    pub fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        plugin: &str,
        action: &str,
        input: &I,
    ) -> Result<Result<O, String>, ContextError> {
        let input =
            serde_json::to_value(input).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        let envelope: serde_json::Value = self.ctx.call_service(
            Request::PluginsCall,
            &wire::Call {
                plugin: plugin.to_owned(),
                action: action.to_owned(),
                input,
            },
        )?;
        match envelope["status"].as_str() {
            Some("ok") => serde_json::from_value(envelope["data"].clone())
                .map(Ok)
                .map_err(|e| ContextError::Decode(e.to_string())),
            _ => Ok(Err(envelope["data"]
                .as_str()
                .unwrap_or_default()
                .to_owned())),
        }
    }
}

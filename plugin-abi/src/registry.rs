//! The registries a plugin fills in [`Plugin::actions`](crate::Plugin::actions) and
//! [`Plugin::hooks`](crate::Plugin::hooks). Each handler an author registers, typed or bytes,
//! becomes one byte-level `Handler`: the form an instance keeps and the host calls, its answer
//! written straight into the host's buffer ([`Reply`]).

use std::fmt;

use abi_stable::std_types::RVec;
use serde::de::value::UnitDeserializer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ActionError;
use crate::ffi::{ErrorCode, PluginError};

/// A handler as the plugin side keeps it: input bytes in, answer appended to the host's buffer.
pub(crate) type Handler<P> =
    Box<dyn Fn(&P, &[u8], &mut RVec<u8>) -> Result<(), PluginError> + Send + Sync>;

/// The registry a plugin fills in [`Plugin::actions`](crate::Plugin::actions).
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
    /// `host.call(..).bytes(..)`; `.json(..)` works only if the answer is JSON.
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
    /// plugin's own. The fastest kind of action; callers use `host.call(..).bytes(..)` or an
    /// action handle's `call_into`.
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

/// The registry a plugin fills in [`Plugin::hooks`](crate::Plugin::hooks).
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

/// Wraps a typed handler into the byte-level form the host calls: the input is deserialized
/// from JSON (empty is `null`), the output serialized straight into the host's buffer, and each
/// failure gets its code.
fn typed_handler<P, I, O, F>(what: &'static str, name: &str, handler: F) -> Handler<P>
where
    I: DeserializeOwned,
    O: Serialize,
    F: Fn(&P, I) -> Result<O, ActionError> + Send + Sync + 'static,
{
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

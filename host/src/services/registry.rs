//! Every service a plugin can reach, by service and operation name: the one table the
//! membrane's router looks a request up in. Each operation is one row. The host's built-in
//! services (kv, events, timers, secrets, plugin calls, HTTP, logging, the context's own
//! requests) are rows the membrane defines ([`BuiltIn`]: a wire request, the capability it
//! declares, its typed handler), one per [`Request`]; their service names are the protocol's and
//! no program may use them. The services the embedding program offers
//! (`HostBuilder::operation`) are rows too, each with its contract's version and a handler that
//! receives the caller; the membrane checks their capability and version. Panics are contained
//! around either.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use airlock_abi::abi::{ContextToken, Encoding, HostError};
use airlock_abi::contract::{parse_wire_name, valid_name, Operation, Service};
use airlock_abi::manifest::{CapabilityKind, PluginId};
use airlock_abi::wire::Request;

use crate::services::offered::{OfferedIndex, Offering};
use crate::services::HostServices;

/// `bytes` in `encoding` as a `T`. A type postcard cannot read (one that is not
/// self-describing, like `serde_json::Value`) gets a message saying to declare the operation
/// JSON.
fn decode<T: serde::de::DeserializeOwned + serde::Serialize>(
    encoding: Encoding,
    shape: u64,
    bytes: &[u8],
) -> Result<T, String> {
    let value = match encoding {
        Encoding::JSON => serde_json::from_slice(bytes).map_err(|e| {
            format!("{e}; the plugin was probably built against another version of the interface crate, whose types changed without a version bump")
        }),
        Encoding::POSTCARD => postcard::from_bytes(bytes).map_err(|e| match e {
            postcard::Error::WontImplement => format!(
                "postcard cannot read {} (a type that is not self-describing, such as \
                 serde_json::Value, needs JSON): declare the operation `json` in its contract, \
                 `(version N, json)`",
                std::any::type_name::<T>()
            ),
            e => format!("{e} (postcard); the plugin was probably built against another version of the interface crate, whose types changed without a version bump"),
        }),
        Encoding(other) => Err(format!("unknown encoding {other}")),
    }?;
    if encoding == Encoding::POSTCARD && airlock_abi::contract::shape_of(&value) != shape {
        return Err(format!(
            "the plugin's value has another shape than {} (a field, a variant or a kind of \
             number differs; postcard); the plugin was probably built against another version \
             of the interface crate, whose types changed without a version bump (or the type \
             skips fields when it serializes, `skip_serializing_if`, which postcard cannot \
             carry: declare the operation `json`)",
            std::any::type_name::<T>()
        ));
    }
    Ok(value)
}

/// `value` in `encoding`, appended to `out`.
fn encode<T: serde::Serialize>(
    encoding: Encoding,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match encoding {
        Encoding::POSTCARD => {
            out.extend_from_slice(&airlock_abi::contract::shape_of(value).to_le_bytes());
            let taken = std::mem::take(out);
            *out = postcard::to_extend(value, taken).map_err(|e| e.to_string())?;
            Ok(())
        }
        _ => serde_json::to_writer(out, value).map_err(|e| e.to_string()),
    }
}

/// Who is calling a service operation: the plugin and the generation of its instance, and on
/// whose behalf it is serving the call it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The calling plugin's id.
    pub plugin: String,
    /// The generation of its running instance (1 for the first load, then one more per
    /// reload).
    pub generation: u64,
    /// Who asked the plugin for the call it is serving: the host program (on behalf of a
    /// principal, when it named one) or another plugin.
    pub on_behalf_of: airlock_abi::wire::CallerInfo,
}

/// The error a service handler answers with: the plugin receives the message as
/// `ContextError::Service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError(String);

impl ServiceError {
    /// An error with a message for the plugin.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServiceError {}

/// Why a registered operation did not answer.
pub(crate) enum Failure {
    /// The request's input does not decode into the operation's input type.
    BadInput(String),
    /// The handler answered with an error.
    Service(String),
    /// The answer does not serialize.
    Internal(String),
}

type Handler =
    dyn Fn(&Caller, (Encoding, u64), &[u8], &mut Vec<u8>) -> Result<(), Failure> + Send + Sync;

/// One registered operation.
#[derive(Clone)]
pub(crate) struct Registered {
    /// The contract's version.
    pub(crate) version: u32,
    handler: Arc<Handler>,
}

impl Registered {
    /// Runs the handler for `caller` with `input` in `encoding` (postcard with its value's
    /// `shape`), appending the answer, in the same encoding, to `out`.
    pub(crate) fn call_into(
        &self,
        caller: &Caller,
        wire: (Encoding, u64),
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        (self.handler)(caller, wire, input, out)
    }
}

/// The plugin a request comes from, as a built-in operation sees it: its context, which the
/// membrane (the layer above this one) keeps and implements this for.
pub(crate) trait Requester {
    /// The token of its context: what its subscriptions and timer jobs are keyed by.
    fn token(&self) -> ContextToken;
    /// Its id.
    fn plugin(&self) -> &PluginId;
    /// The generation of its instance.
    fn generation(&self) -> u64;
    /// The host's services.
    fn host(&self) -> &dyn HostServices;
    /// Checks that it may use `kind` (with `scope`); a miss is a `CapabilityViolation` and
    /// writes exactly one audit record.
    fn require(&self, kind: CapabilityKind, scope: Option<&str>) -> Result<(), HostError>;
    /// Whether its teardown has begun: no new timers or subscriptions.
    fn closing(&self) -> bool;
    /// Whether the host records what it does ([`HostServices::observe`]: the authors' test
    /// harness).
    fn observed(&self) -> bool;
    /// Its `tracing` span, which its log lines are emitted in.
    fn span(&self) -> &tracing::Span;
    /// The state its previous generation handed over, taken once.
    fn take_handover(&self) -> Option<Vec<u8>>;
    /// Its key ring for sealed values (`None` when its values are stored as they are), read
    /// from the policy once per context.
    fn kv_keys(&self) -> Result<Option<&crate::services::kv::SealKeys>, HostError>;
}

/// One operation of the host's own services, defined by the membrane: the request it serves
/// (its service and operation names on the wire), the capability it declares, and the steps
/// that serve it.
pub(crate) trait BuiltIn: Send + Sync {
    /// The request it serves.
    fn request(&self) -> Request;
    /// The kind of capability it needs (its scope may come from the input), or `None`.
    fn capability(&self) -> Option<CapabilityKind>;
    /// Serves one request of `requester`: the capability checked, the input decoded, the
    /// handler called, its answer encoded.
    fn serve(&self, requester: &dyn Requester, payload: &[u8]) -> Result<Vec<u8>, HostError>;
}

/// Where the router sends a request.
pub(crate) enum Route<'r> {
    /// An operation of one of the host's own services.
    BuiltIn(&'r dyn BuiltIn),
    /// An operation the embedding program offers.
    Offered {
        /// The operation's name.
        name: &'r str,
        /// The contract version the plugin was built against (0 when its request named none).
        version: u32,
        /// What the program registered.
        registered: &'r Registered,
    },
}

/// What a service's operation is, in the registry.
enum Entry {
    BuiltIn(Box<dyn BuiltIn>),
    Offered(Registered),
}

/// Every service, by service and operation name: the built-in ones and the embedding
/// program's.
#[derive(Default)]
pub(crate) struct Registry {
    services: HashMap<String, HashMap<String, Entry>>,
    /// The program's operations again, by their names as bytes: the table's one lookup.
    offered: OfferedIndex,
    /// The first invalid registration, reported when the host is built.
    invalid: Option<String>,
}

/// Whether `service` is the name of one of the host's own services (the protocol's names).
fn is_built_in(service: &str) -> bool {
    Request::ALL.iter().any(|r| r.service() == service)
}

impl fmt::Debug for Registry {
    /// Each service's operations: a built-in one with the capability it needs, the program's
    /// with its contract's version.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operation = |(name, entry): (&String, &Entry)| match entry {
            Entry::BuiltIn(row) => match row.capability() {
                Some(kind) => format!("{name} ({})", kind.name()),
                None => name.clone(),
            },
            Entry::Offered(registered) => format!("{name}@{}", registered.version),
        };
        f.debug_map()
            .entries(
                self.services
                    .iter()
                    .map(|(s, ops)| (s, ops.iter().map(operation).collect::<Vec<_>>())),
            )
            .finish()
    }
}

impl Registry {
    /// Registers a built-in operation under its request's names.
    ///
    /// # Panics
    ///
    /// If an operation is registered for that request already: the membrane's rows are one
    /// per request, and a second would be a mistake in the host's own code.
    pub(crate) fn built_in(&mut self, row: Box<dyn BuiltIn>) {
        let request = row.request();
        let operations = self
            .services
            .entry(request.service().to_owned())
            .or_default();
        let previous = operations.insert(request.operation().to_owned(), Entry::BuiltIn(row));
        assert!(previous.is_none(), "{request:?} has two rows");
    }

    /// Registers `handler` for operation `O`; an invalid registration (a bad name, a built-in
    /// service's name, an operation registered already) is kept for [`Registry::invalid`].
    pub(crate) fn add<O: Operation>(
        &mut self,
        handler: impl Fn(&Caller, O::Input) -> Result<O::Output, ServiceError> + Send + Sync + 'static,
    ) {
        if let Err(e) = self.insert::<O>(handler) {
            self.invalid.get_or_insert(e);
        }
    }

    /// The first invalid registration, if there was one.
    pub(crate) fn invalid(&self) -> Option<&str> {
        self.invalid.as_deref()
    }

    fn insert<O: Operation>(
        &mut self,
        handler: impl Fn(&Caller, O::Input) -> Result<O::Output, ServiceError> + Send + Sync + 'static,
    ) -> Result<(), String> {
        let service = <O::Service as Service>::NAME;
        let operation = O::NAME;
        if !valid_name(service) || !valid_name(operation) {
            return Err(format!(
                "service operation {service}.{operation}: names are 1 to 64 lower-case letters, \
                 digits, '_' or '-'"
            ));
        }
        if is_built_in(service) {
            return Err(format!(
                "service {service:?} is one of the host's built-in services; pick another name"
            ));
        }
        let handler = move |caller: &Caller,
                            (encoding, shape): (Encoding, u64),
                            input: &[u8],
                            out: &mut Vec<u8>| {
            let input: O::Input = decode(encoding, shape, input).map_err(|e| {
                Failure::BadInput(format!(
                    "the input of {service}.{operation} (version {}) does not fit the host's \
                     contract: {e}",
                    O::VERSION
                ))
            })?;
            let output = handler(caller, input).map_err(|e| Failure::Service(e.0))?;
            encode(encoding, &output, out).map_err(|e| {
                Failure::Internal(format!(
                    "the answer of {service}.{operation} does not serialize: {e}"
                ))
            })
        };
        let operations = self.services.entry(service.to_owned()).or_default();
        if operations.contains_key(operation) {
            return Err(format!(
                "service operation {service}.{operation} is registered twice"
            ));
        }
        let registered = Registered {
            version: O::VERSION,
            handler: Arc::new(handler),
        };
        operations.insert(operation.to_owned(), Entry::Offered(registered.clone()));
        self.offered.insert(Offering {
            service,
            name: operation,
            registered,
        });
        Ok(())
    }

    /// Where a request for `operation` of `service` goes: a built-in service by its exact
    /// operation name, or an operation of the program's by its wire name (`name@version`).
    /// How many built-in rows it holds.
    #[cfg(test)]
    pub(crate) fn built_ins(&self) -> usize {
        self.services
            .values()
            .flat_map(HashMap::values)
            .filter(|e| matches!(e, Entry::BuiltIn(_)))
            .count()
    }

    /// The operation `name` of the program's `service`, if it offers one, under the names it
    /// registered: one lookup of the bytes the plugin passed, no parsing (what the
    /// host-function table's `service` call asks).
    #[inline]
    pub(crate) fn offered(&self, service: &[u8], name: &[u8]) -> Option<&Offering> {
        self.offered.get(service, name)
    }

    pub(crate) fn route<'r>(&'r self, service: &str, operation: &'r str) -> Option<Route<'r>> {
        let operations = self.services.get(service)?;
        if let Some(Entry::BuiltIn(row)) = operations.get(operation) {
            return Some(Route::BuiltIn(row.as_ref()));
        }
        let (name, version) = parse_wire_name(operation).unwrap_or((operation, 0));
        match operations.get(name)? {
            Entry::Offered(registered) => Some(Route::Offered {
                name,
                version,
                registered,
            }),
            Entry::BuiltIn(_) => None,
        }
    }
}

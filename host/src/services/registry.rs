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

use airlock_abi::abi::{ContextToken, HostError};
use airlock_abi::contract::{parse_wire_name, valid_name, Operation, Service};
use airlock_abi::manifest::{CapabilityKind, PluginId};
use airlock_abi::wire::Request;

use crate::services::HostServices;

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

type Handler = dyn Fn(&Caller, &[u8]) -> Result<Vec<u8>, Failure> + Send + Sync;

/// One registered operation.
pub(crate) struct Registered {
    /// The contract's version.
    pub(crate) version: u32,
    handler: Arc<Handler>,
}

impl Registered {
    /// Runs the handler for `caller` with the request's JSON input.
    pub(crate) fn call(&self, caller: &Caller, input: &[u8]) -> Result<Vec<u8>, Failure> {
        (self.handler)(caller, input)
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
        let handler = move |caller: &Caller, input: &[u8]| {
            let input: O::Input = serde_json::from_slice(input).map_err(|e| {
                Failure::BadInput(format!(
                    "the input of {service}.{operation} (version {}) does not fit the host's \
                     contract: {e}; the plugin was probably built against another version of the \
                     interface crate, whose types changed without a version bump",
                    O::VERSION
                ))
            })?;
            let output = handler(caller, input).map_err(|e| Failure::Service(e.0))?;
            serde_json::to_vec(&output).map_err(|e| {
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
        operations.insert(
            operation.to_owned(),
            Entry::Offered(Registered {
                version: O::VERSION,
                handler: Arc::new(handler),
            }),
        );
        Ok(())
    }

    /// Where a request for `operation` of `service` goes: a built-in service by its exact
    /// operation name, or an operation of the program's by its wire name (`name@version`).
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

#[cfg(test)]
mod tests {
    use super::*;

    airlock_abi::service! {
        service Kv = "kv" {
            operation Steal = "steal" (version 1): () => ();
            operation Get = "get" (version 1): String => String;
        }
    }

    airlock_abi::service! {
        service Log = "log" {
            operation Write = "write" (version 1): String => ();
        }
    }

    airlock_abi::service! {
        service Editor = "editor" {
            operation Read = "read" (version 2): String => String;
        }
    }

    /// A registry as a host has it: the built-in rows, then the program's operations.
    fn host_registry() -> Registry {
        let mut registry = Registry::default();
        crate::membrane::register_built_ins(&mut registry);
        registry
    }

    #[test]
    fn every_wire_request_is_a_built_in_row() {
        let registry = host_registry();
        for request in Request::ALL {
            let Some(Route::BuiltIn(row)) = registry.route(request.service(), request.operation())
            else {
                panic!("{request:?} has no built-in row");
            };
            assert_eq!(
                row.request(),
                request,
                "{request:?} is served by its own row"
            );
        }
        let rows = registry
            .services
            .values()
            .flat_map(HashMap::values)
            .filter(|e| matches!(e, Entry::BuiltIn(_)))
            .count();
        assert_eq!(
            rows,
            Request::ALL.len(),
            "one row per request, and no other"
        );
    }

    #[test]
    fn every_built_in_row_declares_the_capability_its_request_needs() {
        use CapabilityKind as K;
        let registry = host_registry();
        for request in Request::ALL {
            let expected = match request {
                Request::KvGet
                | Request::KvSet
                | Request::KvDelete
                | Request::KvKeys
                | Request::KvEntry
                | Request::KvList
                | Request::KvCompareAndSet
                | Request::KvWrite => Some(K::Kv),
                Request::EventsPublish => Some(K::EventsPublish),
                Request::EventsSubscribe | Request::EventsUnsubscribe => Some(K::EventsSubscribe),
                Request::TimersEvery | Request::TimersCancel | Request::TimersCron => {
                    Some(K::Timers)
                }
                Request::SecretsGet => Some(K::Secrets),
                Request::PluginsCall => Some(K::PluginsCall),
                Request::HttpRequest | Request::HttpStreamOpen | Request::HttpStreamNext => {
                    Some(K::HttpOutbound)
                }
                _ => None,
            };
            let Some(Route::BuiltIn(row)) = registry.route(request.service(), request.operation())
            else {
                panic!("{request:?} has no built-in row");
            };
            assert_eq!(row.capability(), expected, "{request:?}");
        }
    }

    #[test]
    fn one_table_routes_the_built_in_services_and_the_programs() {
        let mut registry = host_registry();
        registry.add::<Read>(|_, path| Ok(format!("the text of {path}")));
        assert!(registry.invalid().is_none());
        let Some(Route::Offered {
            name,
            version,
            registered,
        }) = registry.route("editor", "read@3")
        else {
            panic!("the program's operation is routed by its wire name");
        };
        assert_eq!((name, version, registered.version), ("read", 3, 2));
        assert!(registry.route("editor", "write@2").is_none());
        assert!(
            registry.route("kv", "get@1").is_none(),
            "built-ins have no versions"
        );
        assert!(registry.route("kv", "drop").is_none());
        assert!(registry.route("nothing", "get").is_none());
    }

    #[test]
    fn the_built_in_services_cannot_be_extended_or_shadowed() {
        // With the built-in rows registered, and without them (the authors' test harness
        // collects the program's operations first): the names are the protocol's either way.
        for mut registry in [host_registry(), Registry::default()] {
            registry.add::<Steal>(|_, ()| Ok(()));
            let invalid = registry.invalid().expect("refused");
            assert!(invalid.contains("built-in"), "{invalid}");
            assert!(registry.route("kv", "steal@1").is_none());
        }
        for attempt in [
            (|r: &mut Registry| r.add::<Get>(|_, key| Ok(key))) as fn(&mut Registry),
            |r| r.add::<Write>(|_, _| Ok(())),
        ] {
            let mut registry = host_registry();
            attempt(&mut registry);
            let invalid = registry.invalid().expect("refused");
            assert!(invalid.contains("built-in"), "{invalid}");
        }
        let registry = host_registry();
        assert!(
            matches!(registry.route("kv", "get"), Some(Route::BuiltIn(row)) if row.request() == Request::KvGet),
            "the built-in row is still the one served"
        );
    }
}

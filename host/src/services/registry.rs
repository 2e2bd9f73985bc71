//! Every service a plugin can reach, by service and operation name: the one table the
//! membrane's router looks a request up in. The host's built-in services (kv, events, timers,
//! secrets, plugin calls, the context's own requests) are registered first, when the registry
//! is made; the services the embedding program offers (`HostBuilder::operation`) after them,
//! each operation with its contract's version and a handler that receives the caller. The
//! membrane checks the capability and the version, and contains panics, around either.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use airlock_abi::contract::{parse_wire_name, valid_name, Operation, Service};
use airlock_abi::wire::Request;

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

/// Where the router sends a request.
pub(crate) enum Route<'r> {
    /// One of the host's own services.
    BuiltIn(Request),
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
    BuiltIn(Request),
    Offered(Registered),
}

/// Every service, by service and operation name: the built-in ones first, then the embedding
/// program's.
pub(crate) struct Registry {
    services: HashMap<String, HashMap<String, Entry>>,
    /// The first invalid registration, reported when the host is built.
    invalid: Option<String>,
}

impl Default for Registry {
    /// A registry of the built-in services.
    fn default() -> Self {
        let mut services: HashMap<String, HashMap<String, Entry>> = HashMap::new();
        for request in Request::ALL {
            services
                .entry(request.service().to_owned())
                .or_default()
                .insert(request.operation().to_owned(), Entry::BuiltIn(request));
        }
        Self {
            services,
            invalid: None,
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.services
                    .iter()
                    .map(|(s, ops)| (s, ops.keys().collect::<Vec<_>>())),
            )
            .finish()
    }
}

impl Registry {
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
        let built_in =
            |ops: &HashMap<String, Entry>| ops.values().any(|e| matches!(e, Entry::BuiltIn(_)));
        if self.services.get(service).is_some_and(built_in) {
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
        if let Some(Entry::BuiltIn(request)) = operations.get(operation) {
            return Some(Route::BuiltIn(*request));
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
        }
    }

    airlock_abi::service! {
        service Editor = "editor" {
            operation Read = "read" (version 2): String => String;
        }
    }

    #[test]
    fn one_table_routes_the_built_in_services_and_the_programs() {
        let mut registry = Registry::default();
        registry.add::<Read>(|_, path| Ok(format!("the text of {path}")));
        assert!(registry.invalid().is_none());
        for request in Request::ALL {
            assert!(
                matches!(
                    registry.route(request.service(), request.operation()),
                    Some(Route::BuiltIn(r)) if r == request
                ),
                "{request:?} is registered first"
            );
        }
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
        assert!(registry.route("nothing", "get").is_none());
    }

    #[test]
    fn the_built_in_services_cannot_be_extended_or_shadowed() {
        let mut registry = Registry::default();
        registry.add::<Steal>(|_, ()| Ok(()));
        let invalid = registry.invalid().expect("refused");
        assert!(invalid.contains("built-in"), "{invalid}");
        assert!(registry.route("kv", "steal@1").is_none());
    }
}

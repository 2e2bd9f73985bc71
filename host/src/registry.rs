//! The services the embedding program offers its plugins (`HostBuilder::operation`), by
//! service and operation name: what the membrane routes a request to once it is not one of the
//! built-in services. Each operation is registered with its contract's version and a handler
//! that receives the caller; the membrane checks the capability, the version and contains
//! panics before and around it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use airlock_abi::contract::{valid_name, Operation, Service};
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

/// The embedding program's services, by service and operation name.
#[derive(Default)]
pub(crate) struct Registry {
    services: HashMap<String, HashMap<String, Registered>>,
    /// The first invalid registration, reported when the host is built.
    invalid: Option<String>,
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
        if Request::ALL.iter().any(|r| r.service() == service) {
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
            Registered {
                version: O::VERSION,
                handler: Arc::new(handler),
            },
        );
        Ok(())
    }

    /// The operation `operation` of `service`, if the program offers it.
    pub(crate) fn find(&self, service: &str, operation: &str) -> Option<&Registered> {
        self.services.get(service)?.get(operation)
    }
}

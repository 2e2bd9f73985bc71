//! Contracts for the services an embedding program offers its plugins, named once in a small
//! interface crate that the program and its plugins both depend on: the service's name, and
//! each operation's name, version and types. Neither side spells an operation as a string.
//!
//! ```
//! use airlock_abi::contract::{Operation, Service};
//! use serde::{Deserialize, Serialize};
//!
//! /// The editor the host program is.
//! pub struct Editor;
//!
//! impl Service for Editor {
//!     const NAME: &'static str = "editor";
//! }
//!
//! /// Reads a buffer's text.
//! pub struct ReadBuffer;
//!
//! #[derive(Serialize, Deserialize)]
//! pub struct Buffer {
//!     pub name: String,
//! }
//!
//! impl Operation for ReadBuffer {
//!     type Service = Editor;
//!     const NAME: &'static str = "read_buffer";
//!     const VERSION: u32 = 1;
//!     type Input = Buffer;
//!     type Output = String;
//! }
//! ```
//!
//! The [`service!`](crate::service!) macro writes the same in one place per operation:
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Serialize, Deserialize)]
//! # pub struct Buffer { pub name: String }
//! airlock_abi::service! {
//!     /// The editor the host program is.
//!     pub service Editor = "editor" {
//!         /// Reads a buffer's text.
//!         pub operation ReadBuffer = "read_buffer" (version 1): Buffer => String;
//!     }
//! }
//! # use airlock_abi::contract::Operation;
//! assert_eq!(airlock_abi::contract::wire_name::<ReadBuffer>(), "read_buffer@1");
//! ```
//!
//! A plugin calls it with `ctx.service::<ReadBuffer>(&Buffer { .. })` and needs the capability
//! `service:editor.read_buffer` (or a glob such as `service:editor.*`); the host registers a
//! handler with `HostBuilder::operation::<ReadBuffer>(..)`. The request carries the operation's
//! version: a plugin built against another version of the interface crate gets a clear
//! `Unsupported` answer naming both versions, never a misread value.
//!
//! # Encodings
//!
//! An operation's input and output cross as postcard ([`Encoding::POSTCARD`], compact and
//! several times faster than JSON) unless its contract says JSON: `const ENCODING: Encoding =
//! Encoding::JSON;` in the `impl`, or `(version 1, json)` in [`service!`](crate::service!).
//! postcard is not self-describing, so a type that decodes by looking at what it reads —
//! `serde_json::Value`, `#[serde(untagged)]` or `#[serde(flatten)]` types, internally tagged
//! enums — and one that skips fields when it serializes (`skip_serializing_if`) need JSON;
//! using postcard with one fails with a message saying to declare the
//! operation `json`. postcard writes no field names either, so each postcard request and
//! answer carries the shape of its value (field and variant names, the kind of each scalar,
//! hashed), which the receiver compares with the shape of what it read: a type changed without
//! a version bump is refused as it is with JSON, never misread. The host holds the types and decodes either encoding per request: a
//! plugin that reaches it through the vtable's frozen `request` slot (an isolated plugin, a
//! plugin built before encodings) sends JSON, whatever the contract says.
//!
//! ```
//! # use serde::{Deserialize, Serialize};
//! airlock_abi::service! {
//!     /// Notes.
//!     pub service Notes = "notes" {
//!         /// Any JSON value, so JSON.
//!         pub operation Annotate = "annotate" (version 2, json): serde_json::Value => bool;
//!     }
//! }
//! # use airlock_abi::contract::{Encoding, Operation};
//! assert_eq!(Annotate::ENCODING, Encoding::JSON);
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::host_fns::Encoding;

/// A service the embedding program offers.
pub trait Service: 'static {
    /// Its name: what capabilities and requests use (`service:<NAME>.<operation>`). Lower-case
    /// letters, digits, `_` and `-`; not the name of a built-in service.
    const NAME: &'static str;
}

/// One operation of a [`Service`], with its types.
pub trait Operation: 'static {
    /// The service it belongs to.
    type Service: Service;
    /// Its name within the service (letters, digits, `_` and `-`).
    const NAME: &'static str;
    /// Changed whenever `Input` or `Output` change incompatibly: the host refuses a request
    /// made with another version.
    const VERSION: u32;
    /// What the plugin sends.
    type Input: Serialize + DeserializeOwned;
    /// What the host answers.
    type Output: Serialize + DeserializeOwned;
    /// How `Input` and `Output` cross: postcard unless the contract says
    /// [`Encoding::JSON`] (see the module documentation).
    const ENCODING: Encoding = Encoding::POSTCARD;
}

/// Declares a [`Service`] and its [`Operation`]s: a unit struct for each, with its name, and for
/// each operation its version, optionally its encoding (`(version 1, json)`; postcard when
/// unsaid, or `(version 1, postcard)`), and its input and output types (see the module's
/// examples).
#[macro_export]
macro_rules! service {
    (
        $(#[$service_meta:meta])*
        $service_vis:vis service $service:ident = $service_name:literal {
            $(
                $(#[$meta:meta])*
                $vis:vis operation $operation:ident = $name:literal
                    (version $version:literal $(, $encoding:ident)?):
                    $input:ty => $output:ty;
            )*
        }
    ) => {
        $(#[$service_meta])*
        $service_vis struct $service;

        impl $crate::contract::Service for $service {
            const NAME: &'static str = $service_name;
        }

        $(
            $(#[$meta])*
            $vis struct $operation;

            impl $crate::contract::Operation for $operation {
                type Service = $service;
                const NAME: &'static str = $name;
                const VERSION: u32 = $version;
                type Input = $input;
                type Output = $output;
                const ENCODING: $crate::contract::Encoding =
                    $crate::__operation_encoding!($($encoding)?);
            }
        )*
    };
}

/// The encoding `service!` writes for an operation. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __operation_encoding {
    () => {
        $crate::contract::Encoding::POSTCARD
    };
    (postcard) => {
        $crate::contract::Encoding::POSTCARD
    };
    (json) => {
        $crate::contract::Encoding::JSON
    };
}

/// The shape of `value` under its type, hashed: what a postcard request or answer carries
/// beside its bytes, so that a type changed without a version bump is refused rather than
/// misread. Used by the host; not public API.
#[doc(hidden)]
pub fn shape_of<T: Serialize + ?Sized>(value: &T) -> u64 {
    crate::shape::shape_of(value)
}

/// The operation name a request carries: `<name>@<version>`.
pub fn wire_name<O: Operation>() -> String {
    format!("{}@{}", O::NAME, O::VERSION)
}

/// Splits a request's operation into its name and version (`read_buffer@1`).
pub fn parse_wire_name(operation: &str) -> Option<(&str, u32)> {
    let (name, version) = operation.rsplit_once('@')?;
    Some((name, version.parse().ok()?))
}

/// Whether `name` can name a service or an operation.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

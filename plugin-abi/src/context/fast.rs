//! The context's calls through the host's register-returning function table ([`HostFns`]),
//! when the host handed one out: each answer lands in a buffer of this thread's, reused from one
//! call to the next (so a small request allocates nothing), and is read where it lies.

use std::cell::RefCell;
use std::mem::ManuallyDrop;

use abi_stable::std_types::{RSlice, RString, RVec};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ContextError;
use crate::ffi::{ContextToken, HostError, HostErrorCode, LogLevel};
use crate::host_fns::{Encoding, HostFns, RawRequest, RawScope, ServiceCall};
use crate::shape::shape_of;

/// The most a thread keeps of its answer buffer between calls.
const KEEP: usize = 64 * 1024;

/// This thread's buffers: the request's encoded input, and the host's answer.
#[derive(Default)]
struct Buffers {
    input: Vec<u8>,
    answer: RVec<u8>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with this thread's buffers (one look-up of the thread-local, which a library
/// reaches through a call), or with buffers of its own when they are in use (the host calling
/// back into this plugin, which calls the host) or gone (the thread is ending). Buffers grown
/// past [`KEEP`] are not kept.
fn with_buffers<R>(
    f: impl FnOnce(&mut Buffers) -> Result<R, ContextError>,
) -> Result<R, ContextError> {
    let mut f = Some(f);
    let reused = BUFFERS.try_with(|cell| {
        let mut buffers = cell.try_borrow_mut().ok()?;
        let result = f.take().map(|f| f(&mut buffers));
        if buffers.input.capacity() > KEEP {
            buffers.input = Vec::new();
        }
        if buffers.answer.capacity() > KEEP {
            buffers.answer = RVec::new();
        }
        result
    });
    match (reused, f) {
        (Ok(Some(result)), _) => result,
        (_, Some(f)) => f(&mut Buffers::default()),
        (_, None) => Err(ContextError::Host(
            "the request's buffers were lost".to_owned(),
        )),
    }
}

/// The error the host left in `out` with `code`.
#[cold]
fn error(code: HostErrorCode, out: &[u8]) -> ContextError {
    let text = RString::from(String::from_utf8_lossy(out).into_owned());
    let (capability, message) = if code == HostErrorCode::CAPABILITY_VIOLATION {
        (text, RString::new())
    } else {
        (RString::new(), text)
    };
    ContextError::from(HostError {
        code,
        capability,
        message,
    })
}

/// Calls the host with `out` emptied, then reads the answer with `read`.
#[inline]
fn answered<R>(
    out: &mut RVec<u8>,
    call: impl FnOnce(&mut RVec<u8>) -> HostErrorCode,
    read: impl FnOnce(&[u8]) -> Result<R, ContextError>,
) -> Result<R, ContextError> {
    out.clear();
    let code = call(out);
    if code == HostErrorCode::OK {
        read(out.as_slice())
    } else {
        Err(error(code, out.as_slice()))
    }
}

/// `value` in `encoding`, into `input` (emptied first).
#[inline]
fn encode(
    encoding: Encoding,
    value: &impl Serialize,
    input: &mut Vec<u8>,
) -> Result<(), ContextError> {
    input.clear();
    let written = if encoding == Encoding::JSON {
        serde_json::to_writer(&mut *input, value).map_err(|e| e.to_string())
    } else {
        postcard::to_extend(value, std::mem::take(input))
            .map(|bytes| *input = bytes)
            .map_err(|e| e.to_string())
    };
    written.map_err(ContextError::BadRequest)
}

/// `bytes` in `encoding` as a `T`; `what` names the answer for the message.
pub(super) fn decode<T: DeserializeOwned>(
    encoding: Encoding,
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, ContextError> {
    let message = match encoding {
        Encoding::JSON => match serde_json::from_slice(bytes) {
            Ok(value) => return Ok(value),
            Err(e) => e.to_string(),
        },
        _ => match postcard::from_bytes(bytes) {
            Ok(value) => return Ok(value),
            Err(postcard::Error::WontImplement) => format!(
                "postcard cannot read {} (a type that is not self-describing, such as \
                 serde_json::Value, needs JSON): declare the operation `json` in its contract, \
                 `(version N, json)`",
                std::any::type_name::<T>()
            ),
            Err(e) => format!("{e} (postcard)"),
        },
    };
    Err(ContextError::Decode(format!(
        "{} does not fit this plugin's contract: {message}",
        what()
    )))
}

/// A log line through the table: nothing to read back, and no buffer to find unless the host
/// answered an error.
#[inline]
pub(super) fn log(
    fns: &HostFns,
    token: ContextToken,
    level: LogLevel,
    message: &str,
) -> Result<(), ContextError> {
    // Not dropped unless the host put something in it: an empty vector owns no memory.
    let mut out = ManuallyDrop::new(RVec::new());
    let code = (fns.log)(
        token,
        level,
        RSlice::from_slice(message.as_bytes()),
        &mut out,
    );
    if code == HostErrorCode::OK && out.capacity() == 0 {
        return Ok(());
    }
    let out = ManuallyDrop::into_inner(out);
    if code == HostErrorCode::OK {
        return Ok(());
    }
    Err(error(code, out.as_slice()))
}

/// A named request through the table, its answer read with `read`.
pub(super) fn request<R>(
    fns: &HostFns,
    token: ContextToken,
    (service, operation, payload): (&str, &str, &[u8]),
    read: impl FnOnce(&[u8]) -> Result<R, ContextError>,
) -> Result<R, ContextError> {
    let raw = RawRequest {
        service: RSlice::from_slice(service.as_bytes()),
        operation: RSlice::from_slice(operation.as_bytes()),
        payload: RSlice::from_slice(payload),
    };
    with_buffers(|b| answered(&mut b.answer, |out| (fns.request)(token, &raw, out), read))
}

/// `kv get` through the table: the key and the scope as they are, the stored JSON read where
/// it lies.
pub(super) fn kv_get<T: DeserializeOwned>(
    fns: &HostFns,
    token: ContextToken,
    key: &str,
    scope: Option<(&str, &str)>,
) -> Result<Option<T>, ContextError> {
    let scope = scope.map(|(kind, id)| RawScope {
        kind: RSlice::from_slice(kind.as_bytes()),
        id: RSlice::from_slice(id.as_bytes()),
    });
    let key = RSlice::from_slice(key.as_bytes());
    with_buffers(|b| {
        answered(
            &mut b.answer,
            |out| (fns.kv_get)(token, key, scope.as_ref(), out),
            |bytes| serde_json::from_slice(bytes).map_err(|e| ContextError::Decode(e.to_string())),
        )
    })
}

/// An operation of the program's services through the table, in the contract's encoding.
pub(super) fn service<O: crate::contract::Operation>(
    fns: &HostFns,
    token: ContextToken,
    input: &O::Input,
) -> Result<O::Output, ContextError> {
    let service = <O::Service as crate::contract::Service>::NAME;
    let postcard = O::ENCODING == Encoding::POSTCARD;
    with_buffers(|b| {
        encode(O::ENCODING, input, &mut b.input)?;
        let call = ServiceCall {
            service: RSlice::from_slice(service.as_bytes()),
            operation: RSlice::from_slice(O::NAME.as_bytes()),
            version: O::VERSION,
            encoding: O::ENCODING,
            input: RSlice::from_slice(&b.input),
            shape: if postcard { shape_of(input) } else { 0 },
        };
        let what = || format!("the answer of {service}.{}@{}", O::NAME, O::VERSION);
        answered(
            &mut b.answer,
            |out| (fns.service)(token, &call, out),
            |bytes| {
                if !postcard {
                    return decode(O::ENCODING, bytes, what);
                }
                let (shape, bytes) = bytes.split_at_checked(8).unwrap_or((&[0; 8], &[]));
                let output: O::Output = decode(O::ENCODING, bytes, what)?;
                if shape_of(&output).to_le_bytes() != shape {
                    return Err(ContextError::Decode(format!(
                        "{} does not fit this plugin's contract: the host's answer has another \
                         shape than {} (a field, a variant or a kind of number differs); the \
                         plugin was probably built against another version of the interface \
                         crate, whose types changed without a version bump (or the type skips \
                         fields when it serializes, which postcard cannot carry: declare the \
                         operation `json`)",
                        what(),
                        std::any::type_name::<O::Output>()
                    )));
                }
                Ok(output)
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_with_a_type_it_cannot_read_says_to_declare_the_operation_json() {
        let bytes = postcard::to_allocvec(&serde_json::json!({"a": 1})).expect("writes");
        let err = decode::<serde_json::Value>(Encoding::POSTCARD, &bytes, || "the answer".into())
            .expect_err("postcard cannot read a Value");
        let ContextError::Decode(message) = err else {
            panic!("a decode error: {err:?}");
        };
        assert!(
            message.contains("declare the operation `json`"),
            "{message}"
        );
        assert!(message.contains("serde_json::value::Value"), "{message}");
    }

    #[test]
    fn both_encodings_read_what_they_wrote_and_refuse_garbage() {
        let value = (7u32, "seven".to_owned());
        for encoding in [Encoding::JSON, Encoding::POSTCARD] {
            let mut bytes = Vec::new();
            encode(encoding, &value, &mut bytes).expect("writes");
            let back: (u32, String) = decode(encoding, &bytes, || "it".into()).expect("reads");
            assert_eq!(back, value);
            let err = decode::<(u32, String)>(encoding, &[0xff; 3], || "the answer".into())
                .expect_err("garbage");
            assert!(
                matches!(&err, ContextError::Decode(m) if m.starts_with("the answer does not fit")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_context_on_a_vtable_without_the_table_keeps_the_frozen_slots() {
        let raw = crate::ffi::HostContext {
            token: ContextToken {
                slot: 0,
                generation: 1,
            },
            vtable: crate::export::idle_vtable(),
        };
        assert!(crate::export::host_fns(raw).is_none());
        assert!(crate::Context::from_raw(raw).host_fns().is_none());
    }
}

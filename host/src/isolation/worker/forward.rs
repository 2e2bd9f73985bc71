//! The context a worker gives its plugin: every host function forwarded over the channel to the
//! host, which serves it with the plugin's real token — and only while a command is served, so
//! a request from a plugin thread between calls is refused.

use std::sync::atomic::Ordering;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use airlock_abi::abi::{
    ContextToken, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef, LogLevel,
};

use super::{CHANNEL, COMMAND, SERVING};
use crate::isolation::wire::{FromWorker, ToWorker};

/// Sends the plugin's request and waits for the host's reply.
fn forward(request: &FromWorker) -> Result<Vec<u8>, HostError> {
    let failed = |message: String| HostError {
        code: HostErrorCode::INTERNAL,
        capability: RString::new(),
        message: RString::from(message),
    };
    let between_calls = || HostError {
        code: HostErrorCode::UNSUPPORTED,
        capability: RString::new(),
        message: RString::from(
            "the plugin runs in a worker process, where its context serves the call in \
             progress only: a request made between calls is refused",
        ),
    };
    let command = COMMAND.load(Ordering::Relaxed);
    if !SERVING.load(Ordering::Relaxed) {
        return Err(between_calls());
    }
    let channel = CHANNEL
        .get()
        .ok_or_else(|| failed("the worker has no channel".to_owned()))?;
    let mut channel = channel.lock();
    // Still serving the command it started in: a request from between two calls does not
    // slip into the next one.
    if !SERVING.load(Ordering::Relaxed) || COMMAND.load(Ordering::Relaxed) != command {
        return Err(between_calls());
    }
    channel
        .answer(request)
        .map_err(|e| failed(format!("the channel to the host broke: {e}")))?;
    let reply = channel
        .command(|command| match command {
            ToWorker::Reply { code: 0, body, .. } => Ok(body.to_vec()),
            ToWorker::Reply {
                code,
                capability,
                body,
            } => Err(HostError {
                code: HostErrorCode(code),
                capability: RString::from(capability),
                message: RString::from(String::from_utf8_lossy(body).into_owned()),
            }),
            _ => Err(failed(
                "the host sent a command while a reply was due".to_owned(),
            )),
        })
        .map_err(|e| failed(format!("the channel to the host broke: {e}")))?;
    reply
}

/// Runs a forwarding function with panics contained: nothing unwinds into the plugin.
fn contained<T>(f: impl FnOnce() -> Result<T, HostError>) -> RResult<T, HostError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(_) => RResult::RErr(HostError {
            code: HostErrorCode::INTERNAL,
            capability: RString::new(),
            message: RString::from("the worker panicked while forwarding a request"),
        }),
    }
}

extern "C" fn forward_log(
    _: ContextToken,
    level: LogLevel,
    message: RStr<'_>,
) -> RResult<(), HostError> {
    contained(|| {
        forward(&FromWorker::Log {
            level: level.0,
            message: message.as_rslice().as_slice().to_vec(),
        })
        .map(drop)
    })
}

extern "C" fn forward_config(_: ContextToken) -> RResult<RVec<u8>, HostError> {
    contained(|| forward(&FromWorker::Config).map(RVec::from))
}

extern "C" fn forward_request(
    _: ContextToken,
    service: RStr<'_>,
    operation: RStr<'_>,
    payload: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    contained(|| {
        let functions = airlock_abi::wire::Request::ContextFunctions;
        if service.as_rslice().as_slice() == functions.service().as_bytes()
            && operation.as_rslice().as_slice() == functions.operation().as_bytes()
        {
            // The host's function table lives in the host's process: the plugin keeps the
            // vtable's slots, which forward.
            return Err(HostError {
                code: HostErrorCode::UNSUPPORTED,
                capability: RString::new(),
                message: RString::from(
                    "an isolated plugin keeps the vtable's slots: the host's function table \
                     is not handed to another process",
                ),
            });
        }
        forward(&FromWorker::Request {
            service: service.as_rslice().as_slice().to_vec(),
            operation: operation.as_rslice().as_slice().to_vec(),
            payload: payload.as_slice().to_vec(),
        })
        .map(RVec::from)
    })
}

const FORWARDING: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
    log: forward_log,
    config: forward_config,
    request: forward_request,
});

/// The context the worker gives the plugin: its token, and functions that forward to the host.
pub(super) fn forwarding_context(token: ContextToken) -> HostContext {
    HostContext {
        token,
        vtable: HostVtableRef(FORWARDING.static_as_prefix()),
    }
}

//! What the host does with what a worker sends while a command runs: the plugin's requests,
//! served by the host's own vtable functions with the plugin's real context token (the
//! membrane, audit, kv and revocation stay in the host), and the command's answer, whose code
//! a worker cannot use to speak for the host.

use abi_stable::std_types::{RResult, RSlice, RStr};
use airlock_abi::abi::{ContextToken, ErrorCode, HostError, HostErrorCode, LogLevel};

use super::wire::FromWorker;
use crate::frame::trace;

/// The codes the host keeps for itself: a worker that answers one of them has answered a plugin
/// error, not told the host how its worker fared.
const RESERVED: std::ops::RangeInclusive<u32> = 0x4149_0000..=0x4149_ffff;

/// Serves one request of the plugin (anything but the command's answer) with the host's own
/// vtable functions, as the plugin's context `token`.
pub(super) fn serve(
    token: Option<ContextToken>,
    request: FromWorker,
) -> Result<Vec<u8>, HostError> {
    let Some(token) = token else {
        return Err(crate::membrane::host_error(
            HostErrorCode::REVOKED,
            "",
            "the plugin has no context yet",
        ));
    };
    let vt = crate::membrane::host_context(token).vtable;
    match request {
        FromWorker::Log { level, message } => {
            let text = String::from_utf8_lossy(&message);
            (vt.log())(token, LogLevel(level), RStr::from_str(&text)).map(|()| Vec::new())
        }
        FromWorker::Config => (vt.config())(token).map(|bytes| bytes.into_vec()),
        FromWorker::Request {
            service,
            operation,
            payload,
        } => {
            let service = String::from_utf8_lossy(&service);
            let operation = String::from_utf8_lossy(&operation);
            if airlock_abi::wire::Request::parse(&service, &operation)
                == Some(airlock_abi::wire::Request::ContextFunctions)
            {
                // Addresses in this process mean nothing in the worker's.
                return Err(crate::membrane::functions_refused());
            }
            // Served on the thread of the call that is waiting for the worker, inside its span.
            let span = if trace::on() {
                tracing::debug_span!(
                    target: trace::TARGET,
                    trace::REQUEST_SPAN,
                    service = named(&service),
                    operation = named(&operation),
                )
            } else {
                tracing::Span::none()
            };
            let _in = span.enter();
            (vt.request())(
                token,
                RStr::from_str(&service),
                RStr::from_str(&operation),
                RSlice::from_slice(&payload),
            )
            .map(|bytes| bytes.into_vec())
        }
        FromWorker::Done { .. } => RResult::RErr(crate::membrane::host_error(
            HostErrorCode::INTERNAL,
            "",
            "an answer is not a request",
        )),
    }
    .into_result()
}

/// A name the worker sent, as a span may show it: the worker's own words only when they are a
/// short name (what every real service and operation is), never its bytes otherwise.
fn named(name: &str) -> &str {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/');
    if name.len() <= 64 && !name.is_empty() && name.chars().all(plain) {
        name
    } else {
        "(not a name)"
    }
}

/// What a worker's answer means for the host: the plugin's code and answer — unless the code is
/// one the host keeps for itself (a worker cannot say its call found it dead, or was killed),
/// which is the plugin's error.
pub(super) fn answered(code: u32, body: Vec<u8>, out: &mut Vec<u8>) -> ErrorCode {
    if !RESERVED.contains(&code) {
        *out = body;
        return ErrorCode(code);
    }
    out.clear();
    out.extend_from_slice(
        format!(
            "the plugin answered {code:#x}, a code the host keeps for itself; taken as the \
             plugin's error ({})",
            String::from_utf8_lossy(&body)
        )
        .as_bytes(),
    );
    ErrorCode::HANDLER
}

#[cfg(test)]
mod tests {
    use super::super::process::{WORKER_FAILURE, WORKER_GONE, WORKER_KILLED};
    use super::*;

    #[test]
    fn a_worker_cannot_answer_the_hosts_own_codes() {
        let mut out = Vec::new();
        for reserved in [
            WORKER_FAILURE,
            WORKER_KILLED,
            WORKER_GONE,
            ErrorCode(0x4149_ffff),
        ] {
            assert_eq!(
                answered(reserved.0, b"gone".to_vec(), &mut out),
                ErrorCode::HANDLER
            );
            assert!(String::from_utf8_lossy(&out).contains("keeps for itself"));
        }
        assert_eq!(
            answered(ErrorCode::DOMAIN.0, b"no".to_vec(), &mut out),
            ErrorCode::DOMAIN
        );
        assert_eq!(out, b"no");
    }

    #[test]
    fn a_worker_is_not_handed_the_hosts_function_table() {
        // The addresses would be this process's: a worker's plugin keeps the frozen slots,
        // even if what speaks for the worker asks anyway.
        let token = ContextToken {
            slot: u32::MAX,
            generation: 1,
        };
        let request = FromWorker::Request {
            service: b"context".to_vec(),
            operation: b"functions".to_vec(),
            payload: Vec::new(),
        };
        let refused = serve(Some(token), request).expect_err("refused");
        assert_eq!(refused.code, HostErrorCode::UNSUPPORTED);
        assert!(refused
            .message
            .as_str()
            .contains("not handed to another process"));
    }
}

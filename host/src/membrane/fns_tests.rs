//! The host-function table against the context table: its answer, revocation from any thread,
//! and what a plugin's bad input gets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::std_types::{RSlice, RVec};
use abi_stable::StableAbi;
use airlock_abi::abi::{
    ContextToken, Encoding, HostErrorCode, HostFns, LogLevel, RawRequest, RawScope, ServiceCall,
};
use airlock_abi::manifest::PluginId;

use super::{answer, table};
use crate::membrane::context::{is_open, open, revoke, ContextEntry, DRAIN_DEADLINE};

fn entry(id: &str, observed: bool) -> ContextEntry {
    let mut entry = ContextEntry::new(
        PluginId::new(id).expect("id"),
        1,
        b"{}".to_vec(),
        Vec::new(),
        None,
        None,
    );
    entry.observed = observed;
    entry
}

/// Every function of the table called once with `token`: each one's code and what it left.
fn call_all(token: ContextToken) -> Vec<(&'static str, HostErrorCode, Vec<u8>)> {
    let fns = table().0;
    let bytes = |s: &'static str| RSlice::from_slice(s.as_bytes());
    let scope = RawScope {
        kind: bytes("project"),
        id: bytes("p-1"),
    };
    let call = ServiceCall {
        service: bytes("probe"),
        operation: bytes("ping"),
        version: 1,
        encoding: Encoding::POSTCARD,
        input: bytes(""),
        shape: 0,
    };
    let request = RawRequest {
        service: bytes("context"),
        operation: bytes("caller"),
        payload: bytes(""),
    };
    let mut answers = Vec::new();
    let mut record = |name, f: &dyn Fn(&mut RVec<u8>) -> HostErrorCode| {
        let mut out = RVec::new();
        let code = f(&mut out);
        answers.push((name, code, out.into_vec()));
    };
    record("log trace", &|out| {
        (fns.log)(token, LogLevel::TRACE, bytes("x"), out)
    });
    record("log error", &|out| {
        (fns.log)(token, LogLevel::ERROR, bytes("x"), out)
    });
    record("kv_get", &|out| {
        (fns.kv_get)(token, bytes("k"), Some(&scope), out)
    });
    record("service", &|out| (fns.service)(token, &call, out));
    record("request", &|out| (fns.request)(token, &request, out));
    answers
}

/// The answer a plugin checks (the plugin's side of the check is `airlock_abi`'s).
#[test]
fn the_answer_names_the_table_and_a_layout_the_checker_accepts() {
    let answer = answer();
    assert_eq!(answer.len(), 16);
    let address =
        |at: usize| u64::from_le_bytes(answer[at..at + 8].try_into().expect("8 bytes")) as usize;
    let (fns, layout) = table();
    assert_eq!(address(0), std::ptr::from_ref(fns) as usize);
    assert_eq!(address(8), std::ptr::from_ref(layout) as usize);
    check_layout_compatibility(<HostFns as StableAbi>::LAYOUT, layout).expect("same layout");
}

#[test]
fn every_function_answers_revoked_once_revoke_returns_from_any_thread() {
    for observed in [false, true] {
        let token = open(entry("fns-race", observed));
        let revoked = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..3_000 {
                        let after = revoked.load(Ordering::SeqCst);
                        for (name, code, left) in call_all(token) {
                            if after {
                                assert_eq!(code, HostErrorCode::REVOKED, "{name}");
                                assert_eq!(
                                    String::from_utf8_lossy(&left),
                                    "the plugin's context has been revoked",
                                    "{name}"
                                );
                            }
                        }
                    }
                });
            }
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(2));
                assert!(revoke(token, DRAIN_DEADLINE));
                revoked.store(true, Ordering::SeqCst);
            });
        });
        assert!(!is_open(token));
        // The slot reused by a new context: the old token stays revoked.
        let next = open(entry("fns-next", observed));
        for (name, code, _) in call_all(token) {
            assert_eq!(code, HostErrorCode::REVOKED, "{name}");
        }
        assert!(revoke(next, DRAIN_DEADLINE));
    }
}

#[test]
fn a_filtered_log_line_on_an_open_context_is_answered_at_once() {
    let token = open(entry("fns-log", false));
    let mut out = RVec::new();
    let code = (table().0.log)(
        token,
        LogLevel::TRACE,
        RSlice::from_slice(b"\xff\xfe not text"),
        &mut out,
    );
    assert_eq!((code, out.len()), (HostErrorCode::OK, 0));
    assert!(revoke(token, DRAIN_DEADLINE));
    let unknown = ContextToken {
        slot: u32::MAX,
        generation: 3,
    };
    let code = (table().0.log)(unknown, LogLevel::TRACE, RSlice::from_slice(b""), &mut out);
    assert_eq!(code, HostErrorCode::REVOKED);
}

#[test]
fn a_name_that_is_not_text_is_refused_with_a_message_in_the_plugins_buffer() {
    let token = open(entry("fns-utf8", false));
    let bad = RSlice::from_slice(b"kv\xff");
    let request = RawRequest {
        service: bad,
        operation: RSlice::from_slice(b"get"),
        payload: RSlice::from_slice(b"{}"),
    };
    let mut out = RVec::new();
    let code = (table().0.request)(token, &request, &mut out);
    assert_eq!(code, HostErrorCode::BAD_REQUEST);
    assert_eq!(
        String::from_utf8_lossy(&out),
        "the service name is not valid UTF-8"
    );
    assert!(revoke(token, DRAIN_DEADLINE));
}

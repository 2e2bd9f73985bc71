//! The fast way back into the host: a table of host functions that answer with a code in a
//! register, found once per library through the `context functions` request
//! ([`crate::wire::Request::ContextFunctions`]).
//!
//! # Freeze
//!
//! [`HostFns`] is frozen the day it ships, like the root module and the host vtable: its fields
//! are never removed, reordered, retyped or appended. The plugin checks the table's type layout
//! with abi_stable's checker before it uses it, so a host built with another shape is refused
//! and its plugins use the frozen vtable slots. A faster way still would be another request
//! answering with another table type. See `docs/abi-evolution.md`.

use abi_stable::std_types::{RSlice, RVec};
use abi_stable::StableAbi;

use crate::ffi::{ContextToken, HostErrorCode, LogLevel};

/// How a service operation's input and output are encoded ([`ServiceCall::encoding`]); an open
/// set: a host answers an encoding it does not know with [`HostErrorCode::BAD_REQUEST`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding(pub u8);

impl Encoding {
    /// JSON, as through the frozen `request` slot.
    pub const JSON: Self = Self(0);
    /// postcard: serde's compact binary format.
    pub const POSTCARD: Self = Self(1);
}

/// A key/value scope as raw bytes ([`HostFns::kv_get`]): its kind and its id, checked by the
/// host.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct RawScope<'a> {
    /// The scope's kind (a plain name).
    pub kind: RSlice<'a, u8>,
    /// The scope's id.
    pub id: RSlice<'a, u8>,
}

/// A call of an operation of a service the embedding program offers ([`HostFns::service`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct ServiceCall<'a> {
    /// The service's name.
    pub service: RSlice<'a, u8>,
    /// The operation's name, without its version.
    pub operation: RSlice<'a, u8>,
    /// The version of the operation's contract the plugin was built against.
    pub version: u32,
    /// How `input` is encoded, and how the answer is to be.
    pub encoding: Encoding,
    /// The operation's input.
    pub input: RSlice<'a, u8>,
    /// For [`Encoding::POSTCARD`], the shape of the input's value under the plugin's type
    /// (`airlock_abi::contract::shape_of`), which the host compares with the shape of what it
    /// read; the answer starts with the shape of the output's value, as 8 little-endian bytes.
    /// 0 and unused for JSON.
    pub shape: u64,
}

/// A named request, as through the frozen `request` slot ([`HostFns::request`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// The service's name.
    pub service: RSlice<'a, u8>,
    /// The operation's name.
    pub operation: RSlice<'a, u8>,
    /// The request's payload.
    pub payload: RSlice<'a, u8>,
}

/// The host's functions, answering in registers: each returns [`HostErrorCode::OK`] and
/// appends its answer to `out`, or returns an error code and leaves in `out` the error's
/// message (UTF-8) — for [`HostErrorCode::CAPABILITY_VIOLATION`], the capability missing.
/// `out` is the plugin's (empty on entry; grown by its own allocator through the vector's
/// vtable). Strings the plugin passes are bytes the host checks.
///
/// Every function looks the token up like the vtable's: a revoked or stale token is
/// [`HostErrorCode::REVOKED`], from any thread. Frozen: see the module documentation.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct HostFns {
    /// Writes a log line in the plugin's span ([`crate::abi::HostVtable::log`]). A line the
    /// host's level filter drops is answered before anything else is read.
    pub log: extern "C" fn(
        token: ContextToken,
        level: LogLevel,
        message: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> HostErrorCode,
    /// `kv get` of `key`, in `scope` if any: the stored JSON value, or `null`. Capability `kv`.
    pub kv_get: extern "C" fn(
        token: ContextToken,
        key: RSlice<'_, u8>,
        scope: Option<&RawScope<'_>>,
        out: &mut RVec<u8>,
    ) -> HostErrorCode,
    /// An operation of a service the embedding program offers, its input and answer in
    /// `call.encoding`. Capability `service:<service>.<operation>`.
    pub service: extern "C" fn(
        token: ContextToken,
        call: &ServiceCall<'_>,
        out: &mut RVec<u8>,
    ) -> HostErrorCode,
    /// Any named request, as [`crate::abi::HostVtable::request`] serves it.
    pub request: extern "C" fn(
        token: ContextToken,
        request: &RawRequest<'_>,
        out: &mut RVec<u8>,
    ) -> HostErrorCode,
}

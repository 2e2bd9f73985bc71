//! The `kv` service's operations: values, versions, listings, compare-and-set and batches, each
//! in the plugin's own namespace, each needing the `kv` capability (checked before the input is
//! read). A stored value is JSON the host wrote, so an answer embeds it as it is.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind::Kv;
use airlock_abi::wire::{self, Request};

use super::row::{json, row, Bytes, Grant::Unscoped};
use super::{bad_request, host_error};
use crate::services::kv::{KvError, KvStore};
use crate::services::registry::{BuiltIn, Requester};

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![
        row(Request::KvGet, Unscoped(Kv), get),
        row(Request::KvSet, Unscoped(Kv), set),
        row(Request::KvDelete, Unscoped(Kv), delete),
        row(Request::KvKeys, Unscoped(Kv), keys),
        row(Request::KvEntry, Unscoped(Kv), entry),
        row(Request::KvList, Unscoped(Kv), list),
        row(Request::KvCompareAndSet, Unscoped(Kv), compare_and_set),
        row(Request::KvWrite, Unscoped(Kv), write),
    ]
}

/// The store, if the host has a data directory.
fn store(requester: &dyn Requester) -> Result<&KvStore, HostError> {
    requester.host().kv().ok_or_else(|| {
        host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            "this host has no data directory, so no key/value store",
        )
    })
}

fn kv_error(e: KvError) -> HostError {
    match e {
        KvError::TooLarge(m) => bad_request(m),
        KvError::Storage(m) => host_error(HostErrorCode::INTERNAL, "", &m),
    }
}

/// `kv get`: the stored value, or `null`.
fn get(r: &dyn Requester, req: wire::Key) -> Result<Bytes, HostError> {
    let value = store(r)?.get(r.plugin(), &req.key).map_err(kv_error)?;
    Ok(Bytes(value.unwrap_or_else(|| b"null".to_vec())))
}

/// `kv set`: `null` once the write is durable.
fn set(r: &dyn Requester, req: wire::KeyValue) -> Result<(), HostError> {
    store(r)?
        .set(r.plugin(), &req.key, &json(&req.value)?)
        .map_err(kv_error)?;
    Ok(())
}

/// `kv delete`: whether a key was deleted.
fn delete(r: &dyn Requester, req: wire::Key) -> Result<bool, HostError> {
    store(r)?.delete(r.plugin(), &req.key).map_err(kv_error)
}

fn keys(r: &dyn Requester, req: wire::Prefix) -> Result<Vec<String>, HostError> {
    store(r)?.keys(r.plugin(), &req.prefix).map_err(kv_error)
}

/// `kv entry`: the value with its version, or `null`.
fn entry(r: &dyn Requester, req: wire::Key) -> Result<Bytes, HostError> {
    match store(r)?.entry(r.plugin(), &req.key).map_err(kv_error)? {
        Some((value, version)) => encode_entry("", &value, version).map(Bytes),
        None => Ok(Bytes(b"null".to_vec())),
    }
}

fn list(r: &dyn Requester, req: wire::Prefix) -> Result<Bytes, HostError> {
    let mut out = b"[".to_vec();
    for (i, e) in store(r)?
        .list(r.plugin(), &req.prefix)
        .map_err(kv_error)?
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&encode_entry(&e.key, &e.value, e.version)?);
    }
    out.push(b']');
    Ok(Bytes(out))
}

fn compare_and_set(
    r: &dyn Requester,
    req: wire::CompareAndSet,
) -> Result<wire::Swapped, HostError> {
    let value = json(&req.value)?;
    store(r)?
        .compare_and_set(r.plugin(), &req.key, &req.expected, &value)
        .map_err(kv_error)
}

/// `kv write`: the version the writes share.
fn write(r: &dyn Requester, req: wire::Writes) -> Result<u64, HostError> {
    let kv = store(r)?;
    let encoded = req
        .writes
        .iter()
        .map(|w| match w {
            wire::Write::Set { key, value } => Ok((key.as_str(), Some(json(value)?))),
            wire::Write::Delete { key } => Ok((key.as_str(), None)),
        })
        .collect::<Result<Vec<_>, HostError>>()?;
    let writes: Vec<(&str, Option<&[u8]>)> = encoded
        .iter()
        .map(|(key, value)| (*key, value.as_deref()))
        .collect();
    kv.write(r.plugin(), &writes).map_err(kv_error)
}

/// `{"key":..,"value":<the stored JSON>,"version":..}`, without the key when it is empty.
fn encode_entry(key: &str, value: &[u8], version: u64) -> Result<Vec<u8>, HostError> {
    let mut out = Vec::with_capacity(value.len() + key.len() + 48);
    out.push(b'{');
    if !key.is_empty() {
        out.extend_from_slice(b"\"key\":");
        out.extend_from_slice(&json(&key)?);
        out.push(b',');
    }
    out.extend_from_slice(b"\"value\":");
    out.extend_from_slice(value);
    out.extend_from_slice(format!(",\"version\":{version}}}").as_bytes());
    Ok(out)
}

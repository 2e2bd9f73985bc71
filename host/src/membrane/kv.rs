//! The `kv` service's operations: values, versions, listings, compare-and-set and batches, each
//! in the plugin's own namespace, each needing the `kv` capability (checked before the input is
//! read). A stored value is JSON the host wrote, so an answer embeds it as it is. A request may
//! name a scope, checked here before anything is read; a plugin whose values the policy seals
//! has them sealed and opened by the store with its key ring, which never crosses to it.

use abi_stable::std_types::RVec;
use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::CapabilityKind::Kv;
use airlock_abi::wire::{self, Request};

use super::row::{json, row, Bytes, Grant::Unscoped};
use super::{bad_request, host_error};
use crate::services::kv::{KvError, KvScope, KvSpace, KvStore, SealKeys};
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
        KvError::TooLarge(m) | KvError::BadScope(m) => bad_request(m),
        KvError::Sealed(m) | KvError::Storage(m) => host_error(HostErrorCode::INTERNAL, "", &m),
    }
}

/// Where a request works: its scope, checked, and the plugin's key ring if its values are
/// sealed (read once per context).
struct Place<'r> {
    scope: Option<KvScope>,
    keys: Option<&'r SealKeys>,
}

impl<'r> Place<'r> {
    fn of(r: &'r dyn Requester, scope: Option<&wire::KvScope>) -> Result<Self, HostError> {
        Self::named(r, scope.map(|s| (s.kind.as_str(), s.id.as_str())))
    }

    fn named(r: &'r dyn Requester, scope: Option<(&str, &str)>) -> Result<Self, HostError> {
        let scope = scope
            .map(|(kind, id)| KvScope::new(kind, id))
            .transpose()
            .map_err(kv_error)?;
        Ok(Self {
            scope,
            keys: r.kv_keys()?,
        })
    }

    fn space<'a>(&'a self, r: &'a dyn Requester) -> KvSpace<'a> {
        KvSpace::of(r.plugin())
            .scoped(self.scope.as_ref())
            .sealed(self.keys)
    }
}

/// `kv get`: the stored value, or `null`.
fn get(r: &dyn Requester, req: wire::Key) -> Result<Bytes, HostError> {
    let place = Place::of(r, req.scope.as_ref())?;
    let value = store(r)?.get(place.space(r), &req.key).map_err(kv_error)?;
    Ok(Bytes(value.unwrap_or_else(|| b"null".to_vec())))
}

/// `kv get` through the host-function table: the key and the scope as checked text, no JSON
/// request; the stored value (JSON), if set. The capability is checked by the caller.
pub(super) fn get_into(
    r: &dyn Requester,
    key: &str,
    scope: Option<(&str, &str)>,
    out: &mut RVec<u8>,
) -> Result<(), HostError> {
    let place = Place::named(r, scope)?;
    // The value is copied once, from the store's read cache into the plugin's buffer.
    store(r)?
        .read_with(place.space(r), key, |value| {
            out.extend_from_copy_slice(value.unwrap_or(b"null"));
        })
        .map_err(kv_error)
}

/// `kv set`: `null` once the write is durable.
fn set(r: &dyn Requester, req: wire::KeyValue) -> Result<(), HostError> {
    let place = Place::of(r, req.scope.as_ref())?;
    store(r)?
        .set(place.space(r), &req.key, &json(&req.value)?)
        .map_err(kv_error)?;
    Ok(())
}

/// `kv delete`: whether a key was deleted.
fn delete(r: &dyn Requester, req: wire::Key) -> Result<bool, HostError> {
    let place = Place::of(r, req.scope.as_ref())?;
    store(r)?.delete(place.space(r), &req.key).map_err(kv_error)
}

fn keys(r: &dyn Requester, req: wire::Prefix) -> Result<Vec<String>, HostError> {
    let place = Place::of(r, req.scope.as_ref())?;
    store(r)?
        .keys(place.space(r), &req.prefix)
        .map_err(kv_error)
}

/// `kv entry`: the value with its version, or `null`.
fn entry(r: &dyn Requester, req: wire::Key) -> Result<Bytes, HostError> {
    let place = Place::of(r, req.scope.as_ref())?;
    match store(r)?
        .entry(place.space(r), &req.key)
        .map_err(kv_error)?
    {
        Some((value, version)) => encode_entry("", &value, version).map(Bytes),
        None => Ok(Bytes(b"null".to_vec())),
    }
}

fn list(r: &dyn Requester, req: wire::Prefix) -> Result<Bytes, HostError> {
    let place = Place::of(r, req.scope.as_ref())?;
    let mut out = b"[".to_vec();
    for (i, e) in store(r)?
        .list(place.space(r), &req.prefix)
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
    let place = Place::of(r, req.scope.as_ref())?;
    let value = json(&req.value)?;
    store(r)?
        .compare_and_set(place.space(r), &req.key, &req.expected, &value)
        .map_err(kv_error)
}

/// `kv write`: the version the writes share.
fn write(r: &dyn Requester, req: wire::Writes) -> Result<u64, HostError> {
    let kv = store(r)?;
    let place = Place::of(r, req.scope.as_ref())?;
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
    kv.write(place.space(r), &writes).map_err(kv_error)
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

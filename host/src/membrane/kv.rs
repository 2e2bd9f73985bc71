//! The `kv` service's requests, once the membrane has checked the `kv` capability: values,
//! versions, listings, compare-and-set and batches, each in the plugin's own namespace. A
//! stored value is JSON the host wrote, so an answer embeds it as it is.

use airlock_abi::abi::{HostError, HostErrorCode};
use airlock_abi::manifest::PluginId;
use airlock_abi::wire::{self, Request};

use super::{bad_request, body, host_error, json};
use crate::services::kv::{KvError, KvStore};

fn kv_error(e: KvError) -> HostError {
    match e {
        KvError::TooLarge(m) => bad_request(m),
        KvError::Storage(m) => host_error(HostErrorCode::INTERNAL, "", &m),
    }
}

/// `{"key":..,"value":<the stored JSON>,"version":..}`, without the key when it is empty.
fn entry(key: &str, value: &[u8], version: u64) -> Result<Vec<u8>, HostError> {
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

/// Serves one kv request for `plugin`.
pub(super) fn serve(
    kv: &KvStore,
    plugin: &PluginId,
    request: Request,
    payload: &[u8],
) -> Result<Vec<u8>, HostError> {
    match request {
        Request::KvGet => {
            let req: wire::Key = body(payload)?;
            match kv.get(plugin, &req.key).map_err(kv_error)? {
                Some(bytes) => Ok(bytes),
                None => Ok(b"null".to_vec()),
            }
        }
        Request::KvSet => {
            let req: wire::KeyValue = body(payload)?;
            kv.set(plugin, &req.key, &json(&req.value)?)
                .map_err(kv_error)?;
            Ok(b"null".to_vec())
        }
        Request::KvDelete => {
            let req: wire::Key = body(payload)?;
            json(&kv.delete(plugin, &req.key).map_err(kv_error)?)
        }
        Request::KvKeys => {
            let req: wire::Prefix = body(payload)?;
            json(&kv.keys(plugin, &req.prefix).map_err(kv_error)?)
        }
        Request::KvEntry => {
            let req: wire::Key = body(payload)?;
            match kv.entry(plugin, &req.key).map_err(kv_error)? {
                Some((value, version)) => entry("", &value, version),
                None => Ok(b"null".to_vec()),
            }
        }
        Request::KvList => {
            let req: wire::Prefix = body(payload)?;
            let mut out = b"[".to_vec();
            for (i, e) in kv
                .list(plugin, &req.prefix)
                .map_err(kv_error)?
                .iter()
                .enumerate()
            {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&entry(&e.key, &e.value, e.version)?);
            }
            out.push(b']');
            Ok(out)
        }
        Request::KvCompareAndSet => {
            let req: wire::CompareAndSet = body(payload)?;
            let value = json(&req.value)?;
            json(
                &kv.compare_and_set(plugin, &req.key, &req.expected, &value)
                    .map_err(kv_error)?,
            )
        }
        Request::KvWrite => {
            let req: wire::Writes = body(payload)?;
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
            json(&kv.write(plugin, &writes).map_err(kv_error)?)
        }
        _ => Err(host_error(
            HostErrorCode::UNSUPPORTED,
            "",
            "not a kv request",
        )),
    }
}

//! Publisher signatures: minisign's detached format, a `.minisig` file beside the library
//! (`libfoo.so.minisig`). Stage 2 reads it with the library and checks it on the very bytes it
//! read, against the keys the operator trusts (`[trust]` in the policy), before anything of the
//! library runs; stage 3 decides with the policy's rule (`signature`, `signed_by`) whether what
//! it found will do ([`SignatureStatus`]).
//!
//! The format: the signature's second line is base64 of a two-byte algorithm (`ED`: the
//! file's BLAKE2b-512 is signed; `Ed`: the file itself), the signing key's 8-byte id and the
//! Ed25519 signature; a public key is base64 of `Ed`, the key id and the 32-byte key. The key
//! id (hexadecimal, as `minisign` prints it) names the key in every message. The verifying is
//! `minisign-verify`'s.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;

/// What a signature file's name adds to its library's.
pub const SIGNATURE_SUFFIX: &str = "minisig";

/// The largest signature file read (minisign's are about 300 bytes).
const MAX_SIGNATURE_LEN: u64 = 4096;

/// The signature file of the library at `library`: `libfoo.so.minisig`.
pub fn signature_path(library: &Path) -> PathBuf {
    let mut name = library.as_os_str().to_owned();
    name.push(".");
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// What stage 2 found of a library's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "signature", rename_all = "snake_case")]
pub enum SignatureStatus {
    /// No signature file beside the library.
    Unsigned,
    /// It verified with the key the policy trusts under the name `publisher`.
    Verified {
        /// The name of the key in `[trust]`.
        publisher: String,
        /// The key's id.
        key_id: String,
        /// The signature's trusted comment (signed with the file).
        trusted_comment: String,
    },
    /// Signed by a key the policy does not trust: not verified.
    Untrusted {
        /// The signing key's id.
        key_id: String,
    },
    /// A signature that cannot be read, or that does not verify with the trusted key it names:
    /// the library or the signature was changed, or it signs another file.
    Invalid {
        /// The signing key's id, when the signature could be read that far.
        key_id: Option<String>,
        /// Why.
        why: String,
    },
}

impl SignatureStatus {
    /// The publisher of a verified signature.
    pub fn publisher(&self) -> Option<&str> {
        match self {
            Self::Verified { publisher, .. } => Some(publisher),
            _ => None,
        }
    }
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsigned => f.write_str("unsigned"),
            Self::Verified {
                publisher, key_id, ..
            } => write!(f, "signed by {publisher} (key {key_id})"),
            Self::Untrusted { key_id } => write!(f, "signed by key {key_id}, which is not trusted"),
            Self::Invalid {
                key_id: Some(key_id),
                why,
            } => write!(f, "a signature by key {key_id} that does not verify: {why}"),
            Self::Invalid { key_id: None, why } => write!(f, "an unreadable signature: {why}"),
        }
    }
}

/// The id of a minisign public key (its base64 line), as `minisign` prints it.
///
/// # Errors
///
/// The text is not a minisign public key.
pub fn public_key_id(public_key: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(public_key.trim())
        .map_err(|e| format!("not a minisign public key (base64: {e})"))?;
    if bytes.len() != 42 || &bytes[..2] != b"Ed" {
        return Err("not a minisign public key (it should be 42 bytes, starting Ed)".to_owned());
    }
    Ok(key_id(&bytes[2..10]))
}

/// A key id's 8 bytes as `minisign` shows them: a little-endian number, in hexadecimal.
fn key_id(bytes: &[u8]) -> String {
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    format!("{:016X}", u64::from_le_bytes(id))
}

/// The id of the key that made a signature file's signature.
fn signature_key_id(text: &str) -> Result<String, String> {
    let line = text
        .lines()
        .nth(1)
        .ok_or("the signature file has no signature line")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|e| format!("the signature line is not base64: {e}"))?;
    if bytes.len() != 74 {
        return Err(format!(
            "the signature line holds {} bytes; minisign's hold 74",
            bytes.len()
        ));
    }
    Ok(key_id(&bytes[2..10]))
}

/// Reads the signature beside `library` (if any) and checks it on `bytes` — the library as
/// stage 2 read it — with the key `trust` (name → public key) has for its key id.
pub(crate) fn examine(
    library: &Path,
    bytes: &[u8],
    trust: &BTreeMap<String, String>,
) -> SignatureStatus {
    let path = signature_path(library);
    let text = match read_signature(&path) {
        Ok(Some(text)) => text,
        Ok(None) => return SignatureStatus::Unsigned,
        Err(why) => return SignatureStatus::Invalid { key_id: None, why },
    };
    let key_id = match signature_key_id(&text) {
        Ok(id) => id,
        Err(why) => return SignatureStatus::Invalid { key_id: None, why },
    };
    let invalid = |why: String| SignatureStatus::Invalid {
        key_id: Some(key_id.clone()),
        why,
    };
    let Some((publisher, key)) = trust
        .iter()
        .find(|(_, key)| public_key_id(key).as_deref() == Ok(key_id.as_str()))
    else {
        return SignatureStatus::Untrusted { key_id };
    };
    let signature = match minisign_verify::Signature::decode(&text) {
        Ok(signature) => signature,
        Err(e) => return invalid(format!("{}: {e}", path.display())),
    };
    let key = match minisign_verify::PublicKey::from_base64(key.trim()) {
        Ok(key) => key,
        Err(e) => return invalid(format!("the trusted key {publisher}: {e}")),
    };
    match key.verify(bytes, &signature, true) {
        Ok(()) => SignatureStatus::Verified {
            publisher: publisher.clone(),
            key_id,
            trusted_comment: signature.trusted_comment().to_owned(),
        },
        Err(e) => invalid(format!(
            "{} does not verify with the key trusted as {publisher} ({e}): the library or the \
             signature was changed, or it signs another file",
            path.display()
        )),
    }
}

/// The signature file's text; `None` if there is none.
fn read_signature(path: &Path) -> Result<Option<String>, String> {
    // Not a FIFO or a device to hang on, nor a link elsewhere.
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(format!("{} is not a regular file", path.display()))
        }
        Ok(_) => {}
    }
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_SIGNATURE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_SIGNATURE_LEN {
        return Err(format!(
            "{} is over {MAX_SIGNATURE_LEN} bytes: not a minisign signature",
            path.display()
        ));
    }
    Ok(Some(text))
}

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
pub(crate) const MAX_SIGNATURE_LEN: u64 = 4096;

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
/// stage 2 read it — with the key `trust` (name → public key) has for its key id. Answers
/// what it found, and the signature's text as it was read.
pub(crate) fn examine_with_text(
    library: &Path,
    bytes: &[u8],
    trust: &BTreeMap<String, String>,
) -> (SignatureStatus, Option<String>) {
    match read_signature(&signature_path(library)) {
        Ok(Some(text)) => (verify(library, &text, bytes, trust), Some(text)),
        Ok(None) => (SignatureStatus::Unsigned, None),
        Err(why) => (SignatureStatus::Invalid { key_id: None, why }, None),
    }
}

/// [`examine_with_text`], what it found only.
#[cfg(test)]
fn examine(library: &Path, bytes: &[u8], trust: &BTreeMap<String, String>) -> SignatureStatus {
    examine_with_text(library, bytes, trust).0
}

/// Checks the signature `text` (of the file beside `library`) on `bytes`.
fn verify(
    library: &Path,
    text: &str,
    bytes: &[u8],
    trust: &BTreeMap<String, String>,
) -> SignatureStatus {
    let path = signature_path(library);
    let key_id = match signature_key_id(text) {
        Ok(id) => id,
        Err(why) => {
            return SignatureStatus::Invalid {
                key_id: None,
                why: format!("{}: {why}", path.display()),
            }
        }
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
    let signature = match minisign_verify::Signature::decode(text) {
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

/// The signature file's text; `None` if there is none. A link is followed (like a library's);
/// anything but a regular file (a FIFO, a device) is refused without blocking on it.
fn read_signature(path: &Path) -> Result<Option<String>, String> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(format!("{} is not a regular file", path.display())),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file, its signature and the public key, all made by the `minisign` command-line tool
    /// (0.11), which this project did not write.
    fn vector() -> (PathBuf, Vec<u8>, BTreeMap<String, String>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/minisign");
        let data = dir.join("data.txt");
        let bytes = std::fs::read(&data).expect("the vector's file");
        let public = std::fs::read_to_string(dir.join("key.pub")).expect("the vector's key");
        let key = public.lines().nth(1).expect("the key line").to_owned();
        (
            data,
            bytes,
            [("tool".to_owned(), key)].into_iter().collect(),
        )
    }

    #[test]
    fn a_signature_made_by_the_minisign_tool_verifies_and_a_changed_byte_does_not() {
        let (data, bytes, trust) = vector();
        let status = examine(&data, &bytes, &trust);
        assert_eq!(status.publisher(), Some("tool"), "{status}");
        // The key id as the tool prints it in the .pub file's comment.
        let SignatureStatus::Verified {
            key_id,
            trusted_comment,
            ..
        } = status
        else {
            unreachable!()
        };
        assert_eq!(key_id, "482B203C45A56D6E");
        assert_eq!(trusted_comment, "made by minisign 0.11");
        let mut changed = bytes.clone();
        changed[0] ^= 1;
        assert!(matches!(
            examine(&data, &changed, &trust),
            SignatureStatus::Invalid {
                key_id: Some(_),
                ..
            }
        ));
        // Without the key in [trust], the signer is only named.
        assert_eq!(
            examine(&data, &bytes, &BTreeMap::new()),
            SignatureStatus::Untrusted {
                key_id: "482B203C45A56D6E".to_owned()
            }
        );
    }

    #[test]
    fn a_missing_signature_is_unsigned_and_a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = dir.path().join("libx.so");
        std::fs::write(&library, b"x").expect("write");
        assert_eq!(
            examine(&library, b"x", &BTreeMap::new()),
            SignatureStatus::Unsigned
        );
        let fifo = signature_path(&library);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("a FIFO");
        assert!(matches!(
            examine(&library, b"x", &BTreeMap::new()),
            SignatureStatus::Invalid { key_id: None, .. }
        ));
    }
}

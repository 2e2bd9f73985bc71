//! The author's side: a publisher's key pair (`airlock keygen`) and a library's signature
//! (`airlock sign`), in minisign's formats with the reference `minisign` crate. `sign` takes the
//! keys the `minisign` tool makes too: encrypted ones, and the unencrypted ones of `minisign -G
//! -W`, which that tool writes with an empty checksum the crate calls corrupted.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use airlock::pipeline::{public_key_id, signature_path};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::{write_atomically, write_new};
use crate::Result;

/// The environment variable holding the password of an encrypted secret key.
pub const PASSWORD_ENV: &str = "AIRLOCK_KEY_PASSWORD";

/// The length of a minisign secret key, decoded: algorithms, KDF parameters, key id, the
/// Ed25519 key pair and a checksum.
const SECRET_KEY_LEN: usize = 158;
/// Where the key-derivation algorithm lies in it (two zero bytes: not encrypted).
const KDF_ALG: std::ops::Range<usize> = 2..4;
/// Where its checksum lies (the last 32 bytes).
const CHECKSUM: std::ops::Range<usize> = 126..158;

/// The password in [`PASSWORD_ENV`]; an empty one is no password (a key encrypted with the
/// empty password would only look protected), and a warning says so.
fn password() -> Option<String> {
    match std::env::var(PASSWORD_ENV) {
        Ok(password) if password.is_empty() => {
            eprintln!("warning: {PASSWORD_ENV} is set but empty; it is treated as unset");
            None
        }
        Ok(password) => Some(password),
        Err(_) => None,
    }
}

/// `airlock keygen NAME [--dir DIR]`: `NAME.key` (the secret key, mode 0600; encrypted with
/// `AIRLOCK_KEY_PASSWORD` when it is set and not empty) and `NAME.pub`, in minisign's formats.
pub(crate) fn keygen(name: &str, dir: &Path) -> Result<ExitCode> {
    let password = password();
    let encrypted = password.is_some();
    let pair = match password {
        Some(password) => minisign::KeyPair::generate_encrypted_keypair(Some(password))?,
        None => minisign::KeyPair::generate_unencrypted_keypair()?,
    };
    let secret = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for path in [&secret, &public] {
        if path.exists() {
            eprintln!("{} exists; not overwriting a key", path.display());
            return Ok(ExitCode::from(2));
        }
    }
    let secret_box = pair
        .sk
        .to_box(Some(&format!("airlock secret key {name}")))?;
    write_new(&secret, secret_box.into_string().as_bytes(), 0o600)?;
    let public_box = pair.pk.to_box()?;
    write_new(&public, public_box.into_string().as_bytes(), 0o644)?;
    let key = pair.pk.to_base64();
    println!(
        "secret key: {}{}",
        secret.display(),
        if encrypted {
            " (encrypted)"
        } else {
            " (not encrypted: set AIRLOCK_KEY_PASSWORD to encrypt it)"
        }
    );
    println!(
        "public key: {} (key id {})",
        public.display(),
        public_key_id(&key)?
    );
    println!("operators trust it with, in their policy:");
    println!("  [trust]");
    println!("  {name} = \"{key}\"");
    Ok(ExitCode::SUCCESS)
}

/// `airlock sign FILE --key KEY`: `FILE.minisig`, whose trusted comment names the file.
pub(crate) fn sign(file: &Path, key: &Path, comment: Option<&str>) -> Result<ExitCode> {
    let text = fs::read_to_string(key)
        .map_err(|e| format!("cannot read the secret key {}: {e}", key.display()))?;
    let key_box = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| format!("{} is not a minisign secret key: {e}", key.display()))?;
    let raw = text
        .lines()
        .nth(1)
        .and_then(|line| BASE64.decode(line.trim()).ok())
        .filter(|raw| raw.len() == SECRET_KEY_LEN)
        .ok_or_else(|| format!("{} is not a minisign secret key", key.display()))?;
    let secret = if raw[KDF_ALG] == [0, 0] {
        match minisign::SecretKey::from_unencrypted_box(key_box) {
            Ok(secret) => secret,
            // `minisign -G -W` leaves the checksum empty; the signature below is checked
            // against the key's own public half instead.
            Err(_) if raw[CHECKSUM].iter().all(|b| *b == 0) => {
                minisign::SecretKey::from_bytes(&raw)?
            }
            Err(e) => return Err(format!("cannot open {}: {e}", key.display()).into()),
        }
    } else {
        let Some(password) = password() else {
            eprintln!(
                "{} is encrypted; set {PASSWORD_ENV} to its password",
                key.display()
            );
            return Ok(ExitCode::from(2));
        };
        key_box
            .into_secret_key(Some(password))
            .map_err(|e| format!("cannot open {}: {e}", key.display()))?
    };
    // Signing checks the signature against the public key the secret key carries: a damaged
    // key fails here rather than making signatures nobody can verify.
    let public = minisign::PublicKey::from_secret_key(&secret)?;
    let bytes = fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let trusted = comment.map_or_else(|| format!("timestamp:{now}\tfile:{name}"), str::to_owned);
    let signature = minisign::sign(
        Some(&public),
        &secret,
        std::io::Cursor::new(&bytes),
        Some(&trusted),
        Some("signature from an airlock publisher key"),
    )?;
    let path = signature_path(file);
    write_atomically(&path, signature.into_string().as_bytes())?;
    println!("signed {} -> {}", file.display(), path.display());
    Ok(ExitCode::SUCCESS)
}

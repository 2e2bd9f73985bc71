//! The author's side: a publisher's key pair (`airlock keygen`) and a library's signature
//! (`airlock sign`), in minisign's formats with the reference `minisign` crate.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use airlock::pipeline::{public_key_id, signature_path};

use super::{write_atomically, write_new};
use crate::Result;

/// The environment variable holding the password of an encrypted secret key.
pub const PASSWORD_ENV: &str = "AIRLOCK_KEY_PASSWORD";

/// `airlock keygen NAME [--dir DIR]`: `NAME.key` (the secret key, mode 0600; encrypted with
/// `AIRLOCK_KEY_PASSWORD` when it is set) and `NAME.pub`, in minisign's formats.
pub(crate) fn keygen(name: &str, dir: &Path) -> Result<ExitCode> {
    let password = std::env::var(PASSWORD_ENV).ok();
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
    let secret = match minisign::SecretKey::from_unencrypted_box(key_box.clone()) {
        Ok(secret) => secret,
        Err(unencrypted) => {
            let Ok(password) = std::env::var(PASSWORD_ENV) else {
                eprintln!(
                    "cannot open {} ({unencrypted}); if it is encrypted, set {PASSWORD_ENV} to \
                     its password",
                    key.display()
                );
                return Ok(ExitCode::from(2));
            };
            key_box
                .into_secret_key(Some(password))
                .map_err(|e| format!("cannot open {}: {e}", key.display()))?
        }
    };
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
        None,
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

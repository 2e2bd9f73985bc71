//! Values sealed at rest: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under a key the
//! operator keeps in `[secrets]`, which no plugin can read. A sealed value is stored as
//! `0x01`, the key's name (one length byte, then the name), a random 24-byte nonce, and the
//! ciphertext with its tag. The associated data binds it to where it belongs — the plugin,
//! the scope, the key and the key's name — so a ciphertext copied to another plugin, scope,
//! key or key name does not open: it is refused, never read as garbage.
//!
//! Rotation: a plugin's key ring lists the newest key first. It seals every value written;
//! any key in the ring opens what it sealed (the name stored with each value says which), so
//! values sealed under an older key are still read after a new one is put in front of it, and
//! are sealed under the new one the next time they are written. A key dropped from the ring
//! leaves what it sealed unreadable, with an error naming it.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use super::space::KvSpace;
use super::KvError;

/// The first byte of a sealed value. No unsealed value starts with it: the host stores a
/// plugin's values as JSON text, and JSON text starts with whitespace, `{`, `[`, `"`, `-`, a
/// digit, `t`, `f` or `n` (RFC 8259), never with a control character such as 0x01. So a value
/// starting with it is sealed, whether or not the space it is read from is.
const SEALED: u8 = 0x01;
/// What the associated data starts with: the format, so that no other use of a key opens it.
const CONTEXT: &[u8] = b"airlock kv sealed value 1";
const NONCE: usize = 24;

/// One key of a ring: the name it is stored under with every value it seals, and the key.
struct SealKey {
    name: String,
    cipher: XChaCha20Poly1305,
}

/// The keys a plugin's values are sealed with, newest first: the first seals, each opens what
/// it sealed. Its `Debug` shows the names only.
pub struct SealKeys {
    keys: Vec<SealKey>,
}

impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.name))
            .finish()
    }
}

impl SealKeys {
    /// A ring of `(name, key)`, newest first.
    ///
    /// # Errors
    ///
    /// The ring is empty, or a name is empty or longer than 255 bytes.
    pub fn new(keys: Vec<(String, [u8; 32])>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("a key ring needs at least one key".to_owned());
        }
        let keys = keys
            .into_iter()
            .map(|(name, key)| {
                if name.is_empty() || name.len() > 255 {
                    return Err(format!("key name {name:?}: 1 to 255 bytes"));
                }
                let cipher = XChaCha20Poly1305::new(Key::from_slice(&key));
                Ok(SealKey { name, cipher })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// The names of its keys, newest first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.name.as_str())
    }
}

/// The associated data of a value of `key` in `space` sealed under `name`: each part behind
/// its length, so that no two places share it.
fn associated(space: &KvSpace<'_>, key: &str, name: &str) -> Vec<u8> {
    let mut out = CONTEXT.to_vec();
    let mut part = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    part(space.plugin.as_str().as_bytes());
    match space.scope {
        Some(scope) => {
            part(b"scoped");
            part(scope.kind().as_bytes());
            part(scope.id().as_bytes());
        }
        None => part(b"unscoped"),
    }
    part(key.as_bytes());
    part(name.as_bytes());
    out
}

/// `value` of `key` in `space`, sealed with the ring's newest key.
pub(super) fn seal(
    keys: &SealKeys,
    space: &KvSpace<'_>,
    key: &str,
    value: &[u8],
) -> Result<Vec<u8>, KvError> {
    let newest = &keys.keys[0];
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let aad = associated(space, key, &newest.name);
    let sealed = newest
        .cipher
        .encrypt(
            &nonce,
            Payload {
                msg: value,
                aad: &aad,
            },
        )
        .map_err(|_| KvError::Storage("sealing a value failed".to_owned()))?;
    let mut out = Vec::with_capacity(2 + newest.name.len() + NONCE + sealed.len());
    out.push(SEALED);
    out.push(newest.name.len() as u8);
    out.extend_from_slice(newest.name.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The name of the key a stored value is sealed under, if it is sealed (`Some("")` when it is
/// cut short before its name).
fn sealed_under(stored: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let (&SEALED, rest) = stored.split_first()? else {
        return None;
    };
    let name = rest
        .split_first()
        .and_then(|(&len, rest)| rest.get(..usize::from(len)))
        .unwrap_or_default();
    Some(String::from_utf8_lossy(name))
}

/// A stored value of `key` read from `space`, whose values are not sealed: itself, unless it
/// was sealed (before the policy stopped sealing them) — then refused, naming its key, never
/// handed out as the ciphertext it is.
pub(super) fn unsealed(
    space: &KvSpace<'_>,
    key: &str,
    stored: Vec<u8>,
) -> Result<Vec<u8>, KvError> {
    let Some(name) = sealed_under(&stored) else {
        return Ok(stored);
    };
    let plugin = space.plugin;
    Err(KvError::Sealed(format!(
        "kv key {key:?} of {plugin}: the value is sealed with key {name:?}, but the policy does \
         not seal this plugin's values; put the key back in `[plugins.{plugin}.kv] encrypt` to \
         read it"
    )))
}

/// The value a stored `value` of `key` in `space` seals, opened with the key it names.
pub(super) fn open(
    keys: &SealKeys,
    space: &KvSpace<'_>,
    key: &str,
    stored: &[u8],
) -> Result<Vec<u8>, KvError> {
    let plugin = space.plugin;
    let refused = |why: String| KvError::Sealed(format!("kv key {key:?} of {plugin}: {why}"));
    let Some((&SEALED, rest)) = stored.split_first() else {
        return Err(refused(
            "the value is not sealed, but the policy seals this plugin's values (it was stored \
             before sealing was turned on, or not by the host)"
                .to_owned(),
        ));
    };
    let cut = || refused("the sealed value is cut short".to_owned());
    let (&len, rest) = rest.split_first().ok_or_else(cut)?;
    let len = usize::from(len);
    if rest.len() < len + NONCE {
        return Err(cut());
    }
    let (name, rest) = rest.split_at(len);
    let name = String::from_utf8_lossy(name);
    let (nonce, sealed) = rest.split_at(NONCE);
    let Some(ring_key) = keys.keys.iter().find(|k| k.name == name) else {
        return Err(refused(format!(
            "the value is sealed with key {name:?}, which the plugin's key ring ({}) does not \
             hold; put it back in `[plugins.{plugin}.kv] encrypt` to read it",
            keys.names().collect::<Vec<_>>().join(", ")
        )));
    };
    let aad = associated(space, key, &name);
    ring_key
        .cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad,
            },
        )
        .map_err(|_| {
            refused(format!(
                "the value does not open with key {name:?}: it was altered, or moved from \
                 another plugin, scope, key or key ring"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::kv::space::KvScope;
    use airlock_abi::manifest::PluginId;

    fn ring(keys: &[(&str, u8)]) -> SealKeys {
        SealKeys::new(keys.iter().map(|&(n, b)| (n.to_owned(), [b; 32])).collect()).expect("ring")
    }

    #[test]
    fn a_sealed_value_opens_only_where_it_was_sealed_and_with_its_key() {
        let (a, b) = (
            PluginId::new("a").expect("id"),
            PluginId::new("b").expect("id"),
        );
        let scope = KvScope::new("project", "p1").expect("scope");
        let other = KvScope::new("project", "p2").expect("scope");
        let keys = ring(&[("k1", 1)]);
        let here = KvSpace::of(&a).scoped(Some(&scope));
        let sealed = seal(&keys, &here, "x", b"\"secret\"").expect("sealed");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            open(&keys, &here, "x", &sealed).expect("opens"),
            b"\"secret\""
        );
        for (space, key) in [
            (KvSpace::of(&b).scoped(Some(&scope)), "x"),
            (KvSpace::of(&a).scoped(Some(&other)), "x"),
            (KvSpace::of(&a), "x"),
            (here, "y"),
        ] {
            let refused = open(&keys, &space, key, &sealed);
            assert!(
                matches!(&refused, Err(KvError::Sealed(m)) if m.contains("moved")),
                "{refused:?}"
            );
        }
        // The same name over other bytes, a ring without the name, a flipped bit, a cut.
        let impostor = ring(&[("k1", 2)]);
        assert!(
            matches!(open(&impostor, &here, "x", &sealed), Err(KvError::Sealed(m)) if m.contains("does not open"))
        );
        let rotated_away = ring(&[("k2", 2)]);
        assert!(
            matches!(open(&rotated_away, &here, "x", &sealed), Err(KvError::Sealed(m)) if m.contains("\"k1\""))
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().expect("bytes") ^= 1;
        assert!(open(&keys, &here, "x", &flipped).is_err());
        for n in 0..sealed.len() {
            assert!(open(&keys, &here, "x", &sealed[..n]).is_err(), "cut at {n}");
        }
        assert!(
            matches!(open(&keys, &here, "x", b"\"plain\""), Err(KvError::Sealed(m)) if m.contains("not sealed"))
        );
    }

    #[test]
    fn after_rotation_the_newest_key_seals_and_the_older_one_still_opens() {
        let a = PluginId::new("a").expect("id");
        let space = KvSpace::of(&a);
        let old = ring(&[("k1", 1)]);
        let sealed_old = seal(&old, &space, "x", b"1").expect("sealed");
        let rotated = ring(&[("k2", 2), ("k1", 1)]);
        assert_eq!(
            open(&rotated, &space, "x", &sealed_old).expect("opens"),
            b"1"
        );
        let sealed_new = seal(&rotated, &space, "x", b"2").expect("sealed");
        assert_eq!(&sealed_new[2..4], b"k2");
        assert!(open(&old, &space, "x", &sealed_new).is_err());
    }
}

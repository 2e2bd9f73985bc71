//! The policy's say over a plugin's key/value store: `[plugins.<id>.kv] encrypt`, the storage
//! keys its values are sealed with (newest first), each a `[secrets]` entry with
//! `kind = "storage_key"` that no plugin can read.

use airlock_abi::manifest::PluginId;
use base64::Engine as _;
use serde::Deserialize;

use super::{Policy, SecretSource};

/// `[plugins.<id>.kv]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKv {
    encrypt: Option<KeyNames>,
}

/// One storage key's name, or a ring of them, newest first.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeyNames {
    One(String),
    Ring(Vec<String>),
}

/// The 32 bytes a key's base64 text stands for.
///
/// # Errors
///
/// The text is not base64 of exactly 32 bytes (the message shows no part of it).
pub(super) fn key_bytes(base64_text: &str) -> Result<[u8; 32], String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text.trim())
        .map_err(|_| "is not base64 (make one with `openssl rand -base64 32`)".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "is {} bytes; a storage key is 32 (make one with `openssl rand -base64 32`)",
            bytes.len()
        )
    })
}

/// The storage keys `[plugins.<id>.kv] encrypt` names, each checked to be one.
pub(super) fn kv_encrypt(
    policy: &Policy,
    id: &str,
    raw: Option<RawKv>,
) -> Result<Vec<String>, String> {
    let names = match raw.and_then(|kv| kv.encrypt) {
        None => return Ok(Vec::new()),
        Some(KeyNames::One(name)) => vec![name],
        Some(KeyNames::Ring(names)) => names,
    };
    if names.is_empty() {
        return Err(format!(
            "[plugins.{id}.kv] encrypt: name at least one storage key, or leave encrypt out"
        ));
    }
    for name in &names {
        if !policy.storage_keys.contains_key(name) {
            return Err(format!(
                "[plugins.{id}.kv] encrypt: {name:?} is not a storage key; declare it in \
                 [secrets] as {name} = {{ env = \"VARIABLE\", kind = \"storage_key\" }} (or value = \
                 \"<base64 of 32 bytes>\")"
            ));
        }
        if name.len() > 255 {
            return Err(format!(
                "[plugins.{id}.kv] encrypt: a storage key's name is at most 255 bytes"
            ));
        }
    }
    Ok(names)
}

impl Policy {
    /// Provides a storage key (`kind = "storage_key"`: the host seals values with it; no plugin can
    /// read it), for programs that build their policy in code.
    pub fn set_storage_key(&mut self, name: &str, source: SecretSource) {
        self.secrets.remove(name);
        self.storage_keys.insert(name.to_owned(), source);
    }

    /// Whether the secret `name` is a storage key (`kind = "storage_key"`), which no plugin reads.
    pub fn is_storage_key(&self, name: &str) -> bool {
        self.storage_keys.contains_key(name)
    }

    /// The keys `plugin`'s kv values are sealed with (`[plugins.<id>.kv] encrypt`), by name,
    /// newest first; none if its values are stored as they are.
    ///
    /// # Errors
    ///
    /// A key is not available (its environment variable is unset) or not base64 of 32 bytes;
    /// the message names the key, never its value.
    pub(crate) fn kv_keys(&self, plugin: &PluginId) -> Result<Vec<(String, [u8; 32])>, String> {
        self.for_plugin(plugin)
            .kv_encrypt
            .iter()
            .map(|name| {
                let text = self
                    .storage_keys
                    .get(name)
                    .ok_or_else(|| "the policy's [secrets] table does not provide it".to_owned())
                    .and_then(SecretSource::read)
                    .map_err(|why| format!("storage key {name:?} is not available: {why}"))?;
                let key = key_bytes(&text).map_err(|why| format!("storage key {name:?} {why}"))?;
                Ok((name.clone(), key))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Policy, PolicyFormat};
    use airlock_abi::manifest::PluginId;

    #[test]
    fn a_key_is_base64_of_32_bytes() {
        use base64::Engine as _;
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(super::key_bytes(&good), Ok([7u8; 32]));
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert!(super::key_bytes(&short)
            .expect_err("short")
            .contains("16 bytes"));
        assert!(super::key_bytes("not base64!").is_err());
    }

    fn parse(text: &str) -> Result<Policy, String> {
        Policy::parse(text, PolicyFormat::Toml)
    }

    #[test]
    fn a_plugin_is_sealed_only_with_storage_keys_that_no_plugin_reads() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let policy = parse(&format!(
            "[secrets]\nnew = {{ value = \"{key}\", kind = \"storage_key\" }}\nold = {{ value = \"{key}\", kind = \"storage_key\" }}\n\
             [plugins.a.kv]\nencrypt = [\"new\", \"old\"]\n[plugins.b.kv]\nencrypt = \"old\"\n"
        ))
        .expect("parses");
        let a = PluginId::new("a").expect("id");
        let ring = policy.kv_keys(&a).expect("keys");
        let names: Vec<_> = ring.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["new", "old"]);
        assert_eq!(ring[0].1, std::array::from_fn::<u8, 32, _>(|i| i as u8));
        let c = PluginId::new("c").expect("id");
        assert!(policy.kv_keys(&c).expect("keys").is_empty());
        let refused = policy.secret("new").expect_err("not readable");
        assert!(refused.contains("storage key"), "{refused}");
        assert!(!format!("{policy:?}").contains(key), "Debug shows no key");

        for (text, says) in [
            ("[secrets]\nk = \"plain\"\n[plugins.a.kv]\nencrypt = \"k\"\n", "not a storage key"),
            ("[plugins.a.kv]\nencrypt = \"missing\"\n", "not a storage key"),
            ("[plugins.a.kv]\nencrypt = []\n", "at least one"),
            ("[secrets]\nk = { value = \"c2hvcnQ=\", kind = \"storage_key\" }\n", "5 bytes"),
            ("[secrets]\nk = { value = \"x\", kind = \"tls\" }\n", "kind"),
            (
                "[secrets]\nk = { value = \"x\", kind = \"storage_key\", header = \"h\", hosts = [\"a\"] }\n",
                "takes only value or env",
            ),
            ("[plugins.a.kv]\nseal = \"k\"\n", "unknown field"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}

//! A plugin's id: the name policies, audit records and key/value namespaces know it by.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest plugin id accepted.
pub const MAX_ID_LEN: usize = 64;

/// A plugin id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter.
///
/// Ids name policy entries, audit records and key/value namespaces, so they never contain path
/// separators, upper case or anything a shell or a file system would treat specially.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PluginId(String);

impl PluginId {
    /// Checks and wraps an id.
    ///
    /// # Errors
    ///
    /// A message saying which rule the id breaks.
    pub fn new(id: &str) -> Result<Self, String> {
        if id.is_empty() {
            return Err("the plugin id is empty".to_owned());
        }
        if id.len() > MAX_ID_LEN {
            return Err(format!(
                "the plugin id is {} characters long; at most {MAX_ID_LEN} are allowed",
                id.len()
            ));
        }
        if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "the plugin id {id:?} must start with a lower-case letter"
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "the plugin id {id:?} contains {bad:?}; use only a-z, 0-9, '-' and '_'"
            ));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PluginId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_ids() {
        for id in [
            "",
            "Hello",
            "a/b",
            "../x",
            "1abc",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(PluginId::new(id).is_err(), "{id:?} should be refused");
        }
        for id in ["a", "hello-world", "x_1", &"a".repeat(64)] {
            assert!(PluginId::new(id).is_ok(), "{id:?} should be accepted");
        }
    }
}

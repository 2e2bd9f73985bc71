//! Where a kv operation reads and writes: a plugin's namespace, or one scope of it, with its
//! values sealed or not. A scope's keys live in a table of their own, each behind the scope's
//! prefix (`kind`, NUL, `id`, NUL): neither part may hold a NUL (or any control character), so
//! no scope's prefix is another's, and no key of the unscoped table is in the scoped one.

use std::borrow::Cow;

use airlock_abi::manifest::PluginId;
use redb::TableDefinition;

use super::seal::SealKeys;
use super::KvError;

/// The longest scope kind accepted, in bytes.
pub const MAX_SCOPE_KIND: usize = 64;
/// The longest scope id accepted, in bytes.
pub const MAX_SCOPE_ID: usize = 256;

/// A scope of the kv store the host understands: a kind (`project`, `run`) and an id. Checked
/// when made: the kind is a plain name (ASCII letters, digits, `_`, `-`, `.`; at most
/// [`MAX_SCOPE_KIND`] bytes), the id at most [`MAX_SCOPE_ID`] bytes with no control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvScope {
    kind: String,
    id: String,
}

impl KvScope {
    /// The scope `(kind, id)`.
    ///
    /// # Errors
    ///
    /// [`KvError::BadScope`] saying which part is wrong and why.
    pub fn new(kind: &str, id: &str) -> Result<Self, KvError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if kind.is_empty() || kind.len() > MAX_SCOPE_KIND || !kind.chars().all(plain) {
            return Err(KvError::BadScope(format!(
                "scope kind {kind:?}: 1 to {MAX_SCOPE_KIND} ASCII letters, digits, `_`, `-` or `.`"
            )));
        }
        if id.is_empty() || id.len() > MAX_SCOPE_ID || id.chars().any(char::is_control) {
            return Err(KvError::BadScope(format!(
                "scope id of kind {kind:?}: 1 to {MAX_SCOPE_ID} bytes without control characters"
            )));
        }
        Ok(Self {
            kind: kind.to_owned(),
            id: id.to_owned(),
        })
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What every stored key of the scope starts with.
    pub(super) fn prefix(&self) -> String {
        format!("{}\0{}\0", self.kind, self.id)
    }

    /// The first stored key past the scope's: the prefix with its last NUL made `\u{1}`.
    pub(super) fn end(&self) -> String {
        format!("{}\0{}\u{1}", self.kind, self.id)
    }
}

/// Where an operation of [`super::KvStore`] works: a plugin's namespace, optionally one of its
/// scopes, with its values sealed by a key ring or stored as they are. `&PluginId` converts
/// into the plain, unscoped, unsealed namespace.
#[derive(Debug, Clone, Copy)]
pub struct KvSpace<'a> {
    pub(super) plugin: &'a PluginId,
    pub(super) scope: Option<&'a KvScope>,
    pub(super) seal: Option<&'a SealKeys>,
}

impl<'a> KvSpace<'a> {
    /// `plugin`'s unscoped namespace, unsealed.
    pub fn of(plugin: &'a PluginId) -> Self {
        Self {
            plugin,
            scope: None,
            seal: None,
        }
    }

    /// The same, in `scope` (or unscoped, for `None`).
    #[must_use]
    pub fn scoped(self, scope: Option<&'a KvScope>) -> Self {
        Self { scope, ..self }
    }

    /// The same, its values sealed with `keys` (or stored as they are, for `None`).
    #[must_use]
    pub fn sealed(self, keys: Option<&'a SealKeys>) -> Self {
        Self { seal: keys, ..self }
    }

    /// The plugin.
    pub fn plugin(&self) -> &PluginId {
        self.plugin
    }

    /// The scope, if any.
    pub fn scope(&self) -> Option<&KvScope> {
        self.scope
    }

    /// The stored form of `key`: itself, or behind the scope's prefix.
    pub(super) fn stored<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match self.scope {
            None => Cow::Borrowed(key),
            Some(scope) => Cow::Owned(scope.prefix() + key),
        }
    }

    /// The key a stored key stands for (the scope's prefix taken off).
    pub(super) fn unstored<'k>(&self, stored: &'k str) -> &'k str {
        match self.scope {
            None => stored,
            Some(_) => stored.splitn(3, '\0').nth(2).unwrap_or(stored),
        }
    }

    pub(super) fn names(&self) -> Names {
        Names::of(self.plugin, self.scope.is_some())
    }
}

impl<'a> From<&'a PluginId> for KvSpace<'a> {
    fn from(plugin: &'a PluginId) -> Self {
        Self::of(plugin)
    }
}

/// The prefix of every scoped values table's name (`kv-scoped/<plugin>`).
pub(super) const SCOPED_VALUES: &str = "kv-scoped/";
/// The prefix of every scoped versions table's name (`kv-scoped-version/<plugin>`).
pub(super) const SCOPED_VERSIONS: &str = "kv-scoped-version/";

/// The names of one namespace's tables: values, and their versions.
pub(super) struct Names {
    values: String,
    versions: String,
}

impl Names {
    fn of(plugin: &PluginId, scoped: bool) -> Self {
        if scoped {
            Self {
                values: format!("{SCOPED_VALUES}{plugin}"),
                versions: format!("{SCOPED_VERSIONS}{plugin}"),
            }
        } else {
            Self {
                values: format!("kv/{plugin}"),
                versions: format!("kv-version/{plugin}"),
            }
        }
    }

    pub(super) fn values(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.values)
    }

    pub(super) fn versions(&self) -> TableDefinition<'_, &'static str, u64> {
        TableDefinition::new(&self.versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_a_plain_kind_and_an_id_without_control_characters() {
        for (kind, id) in [
            ("project", "p-42"),
            ("run", "2026/12/07 run #3 ✓"),
            ("a.b_c-d", "x"),
        ] {
            assert!(KvScope::new(kind, id).is_ok(), "{kind:?} {id:?}");
        }
        let long_kind = "k".repeat(MAX_SCOPE_KIND + 1);
        let long_id = "i".repeat(MAX_SCOPE_ID + 1);
        for (kind, id) in [
            ("", "x"),
            ("project", ""),
            ("pro\0ject", "x"),
            ("project", "a\0b"),
            ("project", "a\nb"),
            ("pro/ject", "x"),
            ("proj ect", "x"),
            (long_kind.as_str(), "x"),
            ("project", long_id.as_str()),
        ] {
            assert!(
                matches!(KvScope::new(kind, id), Err(KvError::BadScope(_))),
                "{kind:?} {id:?}"
            );
        }
    }
}

//! The plugin table, and the names a call by name resolves in it, kept per thread.
//!
//! A table is never changed once published: a load, reload or unload publishes a new one
//! ([`HostShared::update_table`](super::HostShared::update_table)) with a new stamp, a number
//! no earlier table of any host in the process had. Each thread keeps the last few names it
//! resolved, each with the stamp of the table it resolved them in, the plugin's position in
//! that table and the action's index in its manifest. A call by name whose table has the same
//! stamp takes them as they are, comparing the names and hashing nothing; any other table is a
//! miss, so a reload is seen by the very next call on every thread (a renamed action is
//! `not_found` at once). Nothing is shared between threads: a hit writes only the calling
//! thread's own cache.

use std::cell::RefCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::called::{no_such_action, not_loaded};
use super::plugin::LoadedPlugin;
use crate::error::CallError;

/// The stamp of the next table; 0 is never a table's.
static STAMPS: AtomicU64 = AtomicU64::new(1);

/// One published plugin table: the plugins in load order (the newest of an id last).
#[derive(Default)]
pub(crate) struct PluginTable {
    stamp: u64,
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl PluginTable {
    /// A table of `plugins` with a stamp of its own.
    pub(crate) fn new(plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        Self {
            stamp: STAMPS.fetch_add(1, Ordering::Relaxed),
            plugins,
        }
    }

    /// The plugins, to make the next table from.
    pub(crate) fn to_vec(&self) -> Vec<Arc<LoadedPlugin>> {
        self.plugins.clone()
    }

    /// The plugin `plugin` (the newest with that id) and the index of `action` in its
    /// manifest, from this thread's cache when it resolved the same names in this table.
    ///
    /// # Errors
    ///
    /// `not_found` for a plugin that is not loaded or an action it does not have.
    #[inline]
    pub(crate) fn resolve(
        &self,
        plugin: &str,
        action: &str,
    ) -> Result<(&Arc<LoadedPlugin>, usize), CallError> {
        let cached = RESOLVED.with(|cache| cache.borrow().find(self.stamp, plugin, action));
        if let Some((position, index)) = cached {
            if let Some(loaded) = self.plugins.get(position) {
                return Ok((loaded, index));
            }
        }
        self.resolve_and_keep(plugin, action)
    }

    #[cold]
    #[inline(never)]
    fn resolve_and_keep(
        &self,
        plugin: &str,
        action: &str,
    ) -> Result<(&Arc<LoadedPlugin>, usize), CallError> {
        let position = self
            .plugins
            .iter()
            .rposition(|p| p.id().as_str() == plugin)
            .ok_or_else(|| not_loaded(plugin, action))?;
        let loaded = &self.plugins[position];
        let index = loaded
            .file
            .manifest
            .action_index(action)
            .ok_or_else(|| no_such_action(loaded, action))?;
        RESOLVED.with(|cache| {
            cache.borrow_mut().keep(Resolved {
                stamp: self.stamp,
                plugin: plugin.into(),
                action: action.into(),
                position,
                index,
            });
        });
        Ok((loaded, index))
    }
}

impl Deref for PluginTable {
    type Target = [Arc<LoadedPlugin>];

    fn deref(&self) -> &Self::Target {
        &self.plugins
    }
}

/// How many resolved names a thread keeps.
const KEPT: usize = 8;

/// A name resolved in the table with `stamp`.
struct Resolved {
    stamp: u64,
    plugin: Box<str>,
    action: Box<str>,
    position: usize,
    index: usize,
}

/// A thread's resolved names, the most recent first.
struct Names {
    kept: Vec<Resolved>,
}

impl Names {
    #[inline]
    fn find(&self, stamp: u64, plugin: &str, action: &str) -> Option<(usize, usize)> {
        self.kept
            .iter()
            .find(|r| r.stamp == stamp && *r.action == *action && *r.plugin == *plugin)
            .map(|r| (r.position, r.index))
    }

    /// Keeps `resolved` first; drops what was resolved in an earlier table of the same host
    /// for the same names, and the oldest past [`KEPT`].
    fn keep(&mut self, resolved: Resolved) {
        self.kept
            .retain(|r| !(*r.plugin == *resolved.plugin && *r.action == *resolved.action));
        self.kept.insert(0, resolved);
        self.kept.truncate(KEPT);
    }
}

thread_local! {
    static RESOLVED: RefCell<Names> = const { RefCell::new(Names { kept: Vec::new() }) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(stamp: u64, plugin: &str, action: &str, index: usize) -> Resolved {
        Resolved {
            stamp,
            plugin: plugin.into(),
            action: action.into(),
            position: 0,
            index,
        }
    }

    #[test]
    fn a_name_is_found_only_in_the_table_it_was_resolved_in() {
        let mut names = Names { kept: Vec::new() };
        names.keep(resolved(7, "p", "a", 3));
        assert_eq!(names.find(7, "p", "a"), Some((0, 3)));
        assert_eq!(names.find(8, "p", "a"), None, "another table");
        assert_eq!(names.find(7, "p", "b"), None);
        assert_eq!(names.find(7, "q", "a"), None);
        // Names are compared whole: no prefix or concatenation matches.
        assert_eq!(names.find(7, "pa", ""), None);
        assert_eq!(names.find(7, "", "pa"), None);
    }

    #[test]
    fn the_cache_is_bounded_and_a_name_kept_once() {
        let mut names = Names { kept: Vec::new() };
        for i in 0..(KEPT + 5) {
            names.keep(resolved(1, "p", &format!("a{i}"), i));
        }
        assert_eq!(names.kept.len(), KEPT);
        assert_eq!(names.find(1, "p", "a0"), None, "the oldest went first");
        names.keep(resolved(2, "p", &format!("a{}", KEPT + 4), 0));
        assert_eq!(names.kept.len(), KEPT);
        assert_eq!(names.find(1, "p", &format!("a{}", KEPT + 4)), None);
        assert_eq!(names.find(2, "p", &format!("a{}", KEPT + 4)), Some((0, 0)));
    }

    #[test]
    fn every_table_has_a_stamp_of_its_own() {
        let a = PluginTable::new(Vec::new());
        let b = PluginTable::new(a.to_vec());
        assert_ne!(a.stamp, b.stamp);
        assert_ne!(PluginTable::default().stamp, a.stamp);
    }
}

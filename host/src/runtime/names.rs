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
        if let Some((position, index)) = cached.get() {
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
        let fits = u32::try_from(position).is_ok() && u32::try_from(index + 1).is_ok();
        if let (Some(plugin), Some(action), true) = (Name::new(plugin), Name::new(action), fits) {
            RESOLVED.with(|cache| {
                cache.borrow_mut().keep(Resolved {
                    stamp: self.stamp,
                    position,
                    index,
                    plugin,
                    action,
                });
            });
        }
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
/// The longest name kept (a plugin id's limit); longer action names are resolved every time.
const LONGEST: usize = 64;

/// A name as kept: its bytes, zero after its length.
#[derive(Clone, Copy)]
#[repr(align(8))]
struct Name {
    len: usize,
    bytes: [u8; LONGEST],
}

impl Name {
    const EMPTY: Self = Self {
        len: usize::MAX,
        bytes: [0; LONGEST],
    };

    fn new(name: &str) -> Option<Self> {
        let mut kept = Self {
            len: name.len(),
            bytes: [0; LONGEST],
        };
        kept.bytes
            .get_mut(..name.len())?
            .copy_from_slice(name.as_bytes());
        Some(kept)
    }

    /// Whether `name` is this one: eight bytes at a time, in line (a call to `memcmp` costs
    /// more than the comparison of names this short).
    #[inline(always)]
    fn is(&self, name: &str) -> bool {
        let name = name.as_bytes();
        if name.len() != self.len {
            return false;
        }
        let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("eight bytes"));
        let mut chunks = name.chunks_exact(8);
        let mut at = 0;
        for chunk in &mut chunks {
            if word(chunk) != word(&self.bytes[at..at + 8]) {
                return false;
            }
            at += 8;
        }
        // The last few bytes one by one: read as a word from a copy, they would wait for
        // the copy's stores to land.
        chunks
            .remainder()
            .iter()
            .zip(&self.bytes[at..])
            .all(|(a, b)| a == b)
    }
}

/// A name resolved in the table with `stamp`.
#[derive(Clone, Copy)]
struct Resolved {
    stamp: u64,
    position: usize,
    index: usize,
    plugin: Name,
    action: Name,
}

impl Resolved {
    const EMPTY: Self = Self {
        stamp: 0,
        position: 0,
        index: 0,
        plugin: Name::EMPTY,
        action: Name::EMPTY,
    };
}

/// Where a kept name is, in one register: the plugin's position in the high half, the
/// action's index plus one in the low half; 0 when not kept.
#[derive(Clone, Copy)]
struct Found(u64);

impl Found {
    fn at(r: &Resolved) -> Self {
        Self(((r.position as u64) << 32) | (r.index as u64 + 1))
    }

    #[inline(always)]
    fn get(self) -> Option<(usize, usize)> {
        (self.0 != 0).then(|| ((self.0 >> 32) as usize, (self.0 as u32 - 1) as usize))
    }
}

/// A thread's resolved names, the most recent first. Nothing in it is allocated, so a thread
/// reads it with no check of its own: no destructor to register.
struct Names {
    kept: [Resolved; KEPT],
}

impl Names {
    /// The most recent name in line (a caller calling the same action again), the others out
    /// of line.
    #[inline(always)]
    fn find(&self, stamp: u64, plugin: &str, action: &str) -> Found {
        let first = &self.kept[0];
        if first.stamp == stamp && first.action.is(action) && first.plugin.is(plugin) {
            return Found::at(first);
        }
        self.find_further(stamp, plugin, action)
    }

    #[inline(never)]
    fn find_further(&self, stamp: u64, plugin: &str, action: &str) -> Found {
        self.kept[1..]
            .iter()
            .find(|r| r.stamp == stamp && r.action.is(action) && r.plugin.is(plugin))
            .map_or(Found(0), Found::at)
    }

    /// Keeps `resolved` first; drops what was kept for the same names (resolved in an earlier
    /// table), or else the oldest.
    fn keep(&mut self, resolved: Resolved) {
        let same = |r: &Resolved| {
            r.plugin.len == resolved.plugin.len
                && r.plugin.bytes == resolved.plugin.bytes
                && r.action.len == resolved.action.len
                && r.action.bytes == resolved.action.bytes
        };
        let end = self.kept.iter().position(same).unwrap_or(KEPT - 1);
        self.kept.copy_within(0..end, 1);
        self.kept[0] = resolved;
    }
}

thread_local! {
    static RESOLVED: RefCell<Names> = const {
        RefCell::new(Names {
            kept: [Resolved::EMPTY; KEPT],
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(stamp: u64, plugin: &str, action: &str, index: usize) -> Resolved {
        Resolved {
            stamp,
            position: 0,
            index,
            plugin: Name::new(plugin).expect("short"),
            action: Name::new(action).expect("short"),
        }
    }

    fn names() -> Names {
        Names {
            kept: [Resolved::EMPTY; KEPT],
        }
    }

    #[test]
    fn names_compare_whole_at_every_length() {
        for len in 0..=LONGEST {
            let name: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let kept = Name::new(&name).expect("fits");
            assert!(kept.is(&name), "{len}");
            for at in 0..len {
                let mut other = name.clone().into_bytes();
                other[at] = b'Z';
                assert!(
                    !kept.is(std::str::from_utf8(&other).expect("ascii")),
                    "{len} at {at}"
                );
            }
            assert!(!kept.is(&format!("{name}a")));
            if len > 0 {
                assert!(!kept.is(&name[..len - 1]));
            }
        }
        assert!(Name::new(&"x".repeat(LONGEST + 1)).is_none());
        assert!(!Name::EMPTY.is(""), "an empty slot matches nothing");
    }

    #[test]
    fn a_name_is_found_only_in_the_table_it_was_resolved_in() {
        let mut names = names();
        names.keep(resolved(7, "p", "a", 3));
        names.keep(resolved(7, "p", "b", 0));
        assert_eq!(names.find(7, "p", "a").get(), Some((0, 3)), "not first");
        assert_eq!(names.find(7, "p", "b").get(), Some((0, 0)), "first");
        assert_eq!(names.find(8, "p", "a").get(), None, "another table");
        assert_eq!(names.find(7, "p", "c").get(), None);
        assert_eq!(names.find(7, "q", "a").get(), None);
        // Names are compared whole: no prefix or concatenation matches.
        assert_eq!(names.find(7, "pa", "").get(), None);
        assert_eq!(names.find(7, "", "pa").get(), None);
    }

    #[test]
    fn the_cache_is_bounded_and_a_name_kept_once() {
        let mut names = names();
        for i in 0..(KEPT + 5) {
            names.keep(resolved(1, "p", &format!("a{i}"), i));
        }
        assert_eq!(
            names.find(1, "p", "a0").get(),
            None,
            "the oldest went first"
        );
        assert!(names
            .find(1, "p", &format!("a{}", KEPT + 4))
            .get()
            .is_some());
        names.keep(resolved(2, "p", &format!("a{}", KEPT + 4), 0));
        let kept = |n: &Names, a: &str| n.kept.iter().filter(|r| r.action.is(a)).count();
        assert_eq!(kept(&names, &format!("a{}", KEPT + 4)), 1, "kept once");
        assert!(
            names
                .find(1, "p", &format!("a{}", KEPT + 3))
                .get()
                .is_some(),
            "no other dropped"
        );
        assert!(names
            .find(2, "p", &format!("a{}", KEPT + 4))
            .get()
            .is_some());
        assert_eq!(names.find(1, "p", &format!("a{}", KEPT + 4)).get(), None);
        assert_eq!(
            names.find(2, "p", &format!("a{}", KEPT + 4)).get(),
            Some((0, 0))
        );
    }

    #[test]
    fn every_table_has_a_stamp_of_its_own() {
        let a = PluginTable::new(Vec::new());
        let b = PluginTable::new(a.to_vec());
        assert_ne!(a.stamp, b.stamp);
        assert_ne!(PluginTable::default().stamp, a.stamp);
    }
}

//! The store's read cache: what `get` answered from the database, by namespace and key, so that
//! the next `get` of the key is a lookup in memory instead of a read transaction.
//!
//! Reads of the cache write no memory another thread reads (a `papaya` map: a reader pins its
//! own epoch record and reads). Everything that changes the cache — a read filling a miss, a
//! writer, an eviction — holds one lock, the same one a writer holds across its transaction:
//!
//! - a writer takes the lock, removes the keys it writes from the cache, commits (durable, as
//!   without the cache), then puts the new values in and lets go;
//! - a read that misses takes the lock, looks again, reads the database and puts what it read
//!   in.
//!
//! So a fill never races a writer: it reads the database with no write in flight, and what it
//! puts in is the newest committed value. A `get` after a write returned on any thread finds
//! the new value (or misses and reads it); a `get` while a write is in flight finds the old
//! value, or misses and waits for the write, never a value older than one another read of the
//! database (`entry`, a listing) could already have shown it. Sealed values are never kept:
//! what the cache holds is what a read of an unsealed namespace answers. The cache is memory
//! only, so it changes nothing of what `kill -9` leaves: a write is durable before it is cached.

use std::hash::{Hash, Hasher};

use papaya::Equivalent;
use parking_lot::{Mutex, MutexGuard};

/// The most bytes of keys and values the cache keeps; past it, part of it is dropped.
const BUDGET: usize = 64 << 20;
/// The most entries it keeps.
const MAX_ENTRIES: usize = 1 << 17;
/// The largest value it keeps; larger ones are read from the database each time.
const MAX_VALUE: usize = 64 << 10;
/// What an entry costs beside its key and value (the map's slot and allocations, roughly).
const OVERHEAD: usize = 64;

/// A key of one namespace: the plugin, whether it is the plugin's scoped table, and the key as
/// stored there.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    plugin: Box<str>,
    scoped: bool,
    stored: Box<str>,
}

/// A [`Key`] looked up without building one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Place<'a> {
    pub(super) plugin: &'a str,
    pub(super) scoped: bool,
    pub(super) stored: &'a str,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.place().hash(state);
    }
}

impl Hash for Place<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.plugin.hash(state);
        self.scoped.hash(state);
        self.stored.hash(state);
    }
}

impl Key {
    fn place(&self) -> Place<'_> {
        Place {
            plugin: &self.plugin,
            scoped: self.scoped,
            stored: &self.stored,
        }
    }

    fn cost(&self, value: &Option<Box<[u8]>>) -> usize {
        self.plugin.len() + self.stored.len() + value.as_ref().map_or(0, |v| v.len()) + OVERHEAD
    }
}

impl Equivalent<Key> for Place<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.scoped == key.scoped && *self.stored == *key.stored && *self.plugin == *key.plugin
    }
}

/// The cache, and the lock its changes and the store's writers hold.
#[derive(Debug, Default)]
pub(super) struct ReadCache {
    /// A value, or `None` for a key that is not set.
    map: papaya::HashMap<Key, Option<Box<[u8]>>>,
    /// The bytes the cache holds, counted under the lock.
    changing: Mutex<usize>,
}

/// The cache's lock, held: by a writer across its transaction, or by a read filling a miss.
pub(super) struct Changing<'a> {
    cache: &'a ReadCache,
    held: MutexGuard<'a, usize>,
}

impl ReadCache {
    /// Runs `f` with what the cache holds for `place`: `Some(None)` for a key known not to be
    /// set, `None` for a key it does not hold.
    #[inline]
    pub(super) fn read<R>(
        &self,
        place: Place<'_>,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Option<R> {
        let map = self.map.pin();
        map.get(&place).map(|value| f(value.as_deref()))
    }

    /// Takes the lock: for a writer, or a read about to fill a miss.
    pub(super) fn change(&self) -> Changing<'_> {
        Changing {
            cache: self,
            held: self.changing.lock(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

impl Changing<'_> {
    /// Forgets `place`: a writer does it before its transaction.
    pub(super) fn forget(&mut self, place: Place<'_>) {
        let map = self.cache.map.pin();
        if let Some((key, value)) = map.remove_entry(&place) {
            *self.held -= key.cost(value);
        }
    }

    /// Forgets every key `drop` selects (a scope dropped from every plugin).
    pub(super) fn forget_where(&mut self, drop: impl Fn(Place<'_>) -> bool) {
        let map = self.cache.map.pin();
        let mut freed = 0;
        map.retain(|key, value| {
            let keep = !drop(key.place());
            if !keep {
                freed += key.cost(value);
            }
            keep
        });
        *self.held -= freed;
    }

    /// What the cache holds for `place`, looked up again under the lock.
    pub(super) fn read<R>(
        &self,
        place: Place<'_>,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Option<R> {
        self.cache.read(place, f)
    }

    /// Keeps `value` (`None`: not set) for `place`, unless it is too large; makes room when the
    /// cache is full.
    pub(super) fn keep(&mut self, place: Place<'_>, value: Option<&[u8]>) {
        if value.is_some_and(|v| v.len() > MAX_VALUE) {
            self.forget(place);
            return;
        }
        let key = Key {
            plugin: place.plugin.into(),
            scoped: place.scoped,
            stored: place.stored.into(),
        };
        let value: Option<Box<[u8]>> = value.map(Into::into);
        let cost = key.cost(&value);
        self.forget(place);
        if *self.held + cost > BUDGET || self.cache.map.len() >= MAX_ENTRIES {
            self.evict();
        }
        *self.held += cost;
        self.cache.map.pin().insert(key, value);
    }

    /// Drops about a quarter of the entries, whichever the map visits first: what a cache this
    /// size saves is a read transaction per miss, not worth an order of recency on every read.
    #[cold]
    fn evict(&mut self) {
        let map = self.cache.map.pin();
        let mut dropping = map.len() / 4 + 1;
        let mut freed = 0;
        map.retain(|key, value| {
            if dropping == 0 {
                return true;
            }
            dropping -= 1;
            freed += key.cost(value);
            false
        });
        *self.held -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place<'a>(plugin: &'a str, stored: &'a str) -> Place<'a> {
        Place {
            plugin,
            scoped: false,
            stored,
        }
    }

    #[test]
    fn a_place_finds_only_its_own_key() {
        let cache = ReadCache::default();
        cache.change().keep(place("a", "k"), Some(b"1"));
        cache.change().keep(place("a", "missing"), None);
        let get = |p| cache.read(p, |v| v.map(<[u8]>::to_vec));
        assert_eq!(get(place("a", "k")), Some(Some(b"1".to_vec())));
        assert_eq!(get(place("a", "missing")), Some(None), "known unset");
        assert_eq!(get(place("b", "k")), None, "another plugin");
        assert_eq!(get(place("ak", "")), None);
        let scoped = Place {
            scoped: true,
            ..place("a", "k")
        };
        assert_eq!(get(scoped), None, "the scoped table");
        cache.change().forget(place("a", "k"));
        assert_eq!(get(place("a", "k")), None);
    }

    #[test]
    fn large_values_are_not_kept_and_the_budget_holds() {
        let cache = ReadCache::default();
        let big = vec![0u8; MAX_VALUE + 1];
        cache.change().keep(place("a", "big"), Some(&big));
        assert_eq!(cache.read(place("a", "big"), |_| ()), None);
        let value = vec![7u8; MAX_VALUE];
        let fits = BUDGET / (MAX_VALUE + OVERHEAD + 8);
        for i in 0..fits * 2 {
            cache
                .change()
                .keep(place("a", &format!("k{i:05}")), Some(&value));
        }
        let held = *cache.changing.lock();
        assert!(held <= BUDGET, "{held} bytes held");
        assert!(
            cache.len() <= fits + 1 && cache.len() > fits / 2,
            "{}",
            cache.len()
        );
        cache.change().forget_where(|_| true);
        assert_eq!(*cache.changing.lock(), 0);
        assert_eq!(cache.len(), 0);
    }
}

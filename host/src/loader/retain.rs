//! [`Retaining`]: a cell read with one load, because nothing it ever held is freed before the
//! cell itself. For values that are replaced rarely and are small, read on every call (a
//! pre-resolved action handle's plugin and index, replaced on a reload).
//!
//! The atomics come from [`super::sync`]; `scripts/loom.sh` model-checks a reader racing a
//! replacement.

use std::ptr;

use super::sync::{AtomicPtr, Mutex, Ordering};

/// A value that readers see with one acquire load. Replacing it keeps the old value until the
/// cell is dropped, so a reader that loaded it can go on using it: memory grows by one value
/// per replacement.
pub(crate) struct Retaining<T> {
    current: AtomicPtr<T>,
    /// Every value the cell has held; boxed, so their addresses do not move when it grows.
    all: Mutex<Vec<Box<T>>>,
}

impl<T> std::fmt::Debug for Retaining<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retaining").finish_non_exhaustive()
    }
}

impl<T> Retaining<T> {
    pub(crate) fn new(value: T) -> Self {
        let mut first = Box::new(value);
        let current = AtomicPtr::new(ptr::from_mut(&mut *first));
        Self {
            current,
            all: Mutex::new(vec![first]),
        }
    }

    /// The current value.
    #[inline(always)]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `current` always points into one of the boxes in `all` (set in `new` and
        // `replace`, each time to a box pushed there first), which are only dropped with the
        // cell; the acquire load pairs with the release store that published the pointer after
        // its box was written. The borrow cannot outlive `&self`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Makes `value` the current value; the one it replaces stays alive with the cell.
    pub(crate) fn replace(&self, value: T) {
        let mut all = self.all.lock();
        let mut boxed = Box::new(value);
        let address = ptr::from_mut(&mut *boxed);
        all.push(boxed);
        self.current.store(address, Ordering::Release);
    }

    /// How many values the cell holds, the current one included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.all.lock().len()
    }
}

// SAFETY: the cell hands out `&T` to any thread (so `T: Sync`) and moves values in from any
// thread and drops them on the thread that drops the cell (so `T: Send`).
unsafe impl<T: Send + Sync> Sync for Retaining<T> {}
// SAFETY: as above; the raw pointer only ever points into the cell's own boxes.
unsafe impl<T: Send + Sync> Send for Retaining<T> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_value_stays_readable_until_the_cell_is_dropped() {
        let cell = Retaining::new(String::from("first"));
        let first: &String = cell.get();
        cell.replace(String::from("second"));
        assert_eq!(first, "first", "the replaced value is still there");
        assert_eq!(cell.get(), "second");
        assert_eq!(cell.held(), 2);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use std::sync::Arc;

    use super::super::sync::AtomicU64;
    use super::*;

    #[test]
    fn a_reader_racing_a_replacement_sees_a_whole_value() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        builder.check(|| {
            let cell = Arc::new(Retaining::new(AtomicU64::new(1)));
            let reader = {
                let cell = cell.clone();
                loom::thread::spawn(move || {
                    let seen = cell.get().load(Ordering::Relaxed);
                    assert!(
                        seen == 1 || seen == 2,
                        "read {seen}: a value not yet written"
                    );
                })
            };
            // Written before it is published: a reader that finds it must see 2, never 0.
            let next = AtomicU64::new(0);
            next.store(2, Ordering::Relaxed);
            cell.replace(next);
            reader.join().expect("reader");
            assert_eq!(cell.get().load(Ordering::Relaxed), 2);
        });
    }
}

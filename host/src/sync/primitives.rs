//! The atomics, fences and locks the concurrent core ([`super::hazard`], the watchdog's
//! records, the turns of a worker's shared channel) is written against: the standard library's
//! in a normal build, loom's under `--cfg loom`, so that `scripts/loom.sh` model-checks the very
//! code the host runs.
//!
//! Only what the core needs is here. Everything else in the host uses `std` and `parking_lot`
//! directly: it is not model-checked, and it is not compiled into a loom model.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize,
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize,
};

pub(crate) use std::sync::atomic::Ordering;

/// A lock whose `lock` hands back the guard (as `parking_lot`'s does), over loom's mutex in a
/// model, so that a model explores the interleavings around it instead of blocking for real.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(
    #[cfg(loom)] loom::sync::Mutex<T>,
    #[cfg(not(loom))] parking_lot::Mutex<T>,
);

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(loom)]
        return Self(loom::sync::Mutex::new(value));
        #[cfg(not(loom))]
        return Self(parking_lot::Mutex::new(value));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(loom)]
        return self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        #[cfg(not(loom))]
        return self.0.lock();
    }
}

/// Lets a waiting loop give the other threads of a model a turn; sleeps for `pause` otherwise.
#[inline]
pub(crate) fn pause(pause: std::time::Duration) {
    #[cfg(loom)]
    {
        let _ = pause;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    std::thread::sleep(pause);
}

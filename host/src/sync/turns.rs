//! Whose turn it is on a worker's shared channel. The host and its worker talk strictly in
//! turns (a command, then the plugin's requests and the host's replies, then the answer), so
//! one buffer in memory both map is enough: the side that holds it writes one message and
//! hands it over; the other side, waiting for its turn, reads the message out and later hands
//! the buffer back with its own.
//!
//! Waiting is a short spin on the state word (a round trip then costs no system call and no
//! scheduler wake-up), then sleep on a [`Bell`]: the waiting side marks the state `WAITING`
//! with a compare-and-swap before it sleeps, and the side handing over reads that mark in the
//! same atomic swap that hands the buffer over, so a wake-up is never lost (model-checked in
//! `loom_models`). The bell is the channel's socket: the sleeper also wakes when the other
//! process dies, and its timeout is the call's.
//!
//! Everything here is written against [`crate::sync::primitives`], so `scripts/loom.sh` checks
//! this very code. The words are copied in and out with atomic accesses: the other process may
//! write them at any time (a worker is not trusted), and a message is parsed only from the
//! copy.

use std::io;
use std::time::{Duration, Instant};

use crate::sync::primitives::{AtomicU32, AtomicU64, Ordering};

/// One side of the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Host = 0,
    Worker = 1,
}

impl Side {
    fn other(self) -> Self {
        match self {
            Self::Host => Self::Worker,
            Self::Worker => Self::Host,
        }
    }
}

/// The state word's bit that says who holds the buffer (a [`Side`]).
const HOLDER: u32 = 1;
/// The state word's bit that says the side waiting for the buffer sleeps on its bell.
pub(crate) const WAITING: u32 = 2;
/// The length that says the message was too large for the buffer and went over the socket.
const ON_SOCKET: u32 = u32::MAX;

/// How a side that has stopped spinning sleeps until the other side hands it the buffer.
pub(crate) trait Bell {
    /// Wakes the other side, which sleeps (or is about to) on its bell.
    fn ring(&mut self) -> io::Result<()>;
    /// Sleeps until the other side rings; an error if it is gone or `deadline` passes
    /// (`WouldBlock` or `TimedOut`).
    fn sleep(&mut self, deadline: Option<Instant>) -> io::Result<()>;
}

/// The shared words: the state, the message's length, and the message.
pub(crate) struct Turns<'r> {
    state: &'r AtomicU32,
    len: &'r AtomicU32,
    words: &'r [AtomicU64],
}

impl<'r> Turns<'r> {
    /// The turns kept in these words (all zero at first: the host holds the buffer).
    pub(crate) fn new(state: &'r AtomicU32, len: &'r AtomicU32, words: &'r [AtomicU64]) -> Self {
        Self { state, len, words }
    }

    /// The state word (tests play a misbehaving peer with it).
    #[cfg(test)]
    pub(crate) fn state_word(&self) -> &'r AtomicU32 {
        self.state
    }

    /// The largest message the buffer holds.
    pub(crate) fn capacity(&self) -> usize {
        self.words.len() * 8
    }

    /// Writes `message` into the buffer (its holder only); if it does not fit, marks it as
    /// sent over the socket instead. Whether it fit.
    pub(crate) fn put(&self, message: &[u8]) -> bool {
        let Ok(len) = u32::try_from(message.len()) else {
            self.len.store(ON_SOCKET, Ordering::Relaxed);
            return false;
        };
        if message.len() > self.capacity() || len == ON_SOCKET {
            self.len.store(ON_SOCKET, Ordering::Relaxed);
            return false;
        }
        for (word, chunk) in self.words.iter().zip(message.chunks(8)) {
            let mut bytes = [0u8; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        self.len.store(len, Ordering::Relaxed);
        true
    }

    /// Hands the buffer (and the message in it) from `from` to the other side, waking it with
    /// `bell` if it sleeps.
    pub(crate) fn hand_over(&self, from: Side, bell: &mut impl Bell) -> io::Result<()> {
        // Release: the message's words and length are visible to the side that sees the
        // buffer change hands. The swap reads `WAITING` in the same step that clears it.
        let before = self.state.swap(from.other() as u32, Ordering::Release);
        if before & WAITING != 0 {
            bell.ring()?;
        }
        Ok(())
    }

    /// Waits until `side` holds the buffer: spins for up to `spin`, then sleeps on `bell`
    /// until it is rung or `deadline` passes.
    pub(crate) fn wait(
        &self,
        side: Side,
        spin: Duration,
        bell: &mut impl Bell,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let mine = side as u32;
        if !spin.is_zero() {
            let start = Instant::now();
            loop {
                for _ in 0..64 {
                    if self.state.load(Ordering::Acquire) & HOLDER == mine {
                        return Ok(());
                    }
                    std::hint::spin_loop();
                }
                if start.elapsed() >= spin {
                    break;
                }
            }
        }
        loop {
            // Acquire: pairs with the other side's release in `hand_over`.
            let state = self.state.load(Ordering::Acquire);
            if state & !(HOLDER | WAITING) != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the shared channel's state word holds an unknown bit",
                ));
            }
            if state & HOLDER == mine {
                return Ok(());
            }
            // A peer that keeps changing the word cannot keep this side past its deadline.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::ErrorKind::TimedOut.into());
            }
            if state & WAITING == 0
                && self
                    .state
                    .compare_exchange(state, state | WAITING, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                // Handed over meanwhile (or, from a misbehaving worker, changed): look again.
                continue;
            }
            bell.sleep(deadline)?;
        }
    }

    /// Copies the message out of the buffer (its holder only) into `into`; `false` if it came
    /// over the socket instead.
    ///
    /// # Errors
    ///
    /// `InvalidData` if the length is out of bounds (only a misbehaving worker writes one).
    pub(crate) fn take(&self, into: &mut Vec<u8>) -> io::Result<bool> {
        let len = self.len.load(Ordering::Relaxed);
        if len == ON_SOCKET {
            return Ok(false);
        }
        let len = len as usize;
        if len > self.capacity() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a message's length in the shared buffer is out of bounds",
            ));
        }
        into.clear();
        into.reserve(len.next_multiple_of(8));
        for word in &self.words[..len.div_ceil(8)] {
            into.extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        into.truncate(len);
        Ok(true)
    }
}

/// Model checks of the turns with loom (`scripts/loom.sh`): every interleaving of the two
/// sides' steps, under the C11 memory model, within a preemption bound.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::{Arc, Condvar, Mutex};

    /// A bell: rings not yet slept through.
    #[derive(Default)]
    struct Doorbell {
        rings: Mutex<u32>,
        rung: Condvar,
    }

    /// One side's bells: its own to sleep on, the other's to ring.
    struct End {
        mine: Arc<Doorbell>,
        theirs: Arc<Doorbell>,
    }

    impl Bell for End {
        fn ring(&mut self) -> io::Result<()> {
            *self.theirs.rings.lock().expect("lock") += 1;
            self.theirs.rung.notify_one();
            Ok(())
        }
        fn sleep(&mut self, _: Option<Instant>) -> io::Result<()> {
            let mut rings = self.mine.rings.lock().expect("lock");
            while *rings == 0 {
                rings = self.mine.rung.wait(rings).expect("wait");
            }
            *rings -= 1;
            Ok(())
        }
    }

    struct Shared {
        state: AtomicU32,
        len: AtomicU32,
        words: [AtomicU64; 2],
    }

    impl Shared {
        fn turns(&self) -> Turns<'_> {
            Turns::new(&self.state, &self.len, &self.words)
        }
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = builder.preemption_bound.or(Some(3));
        builder.check(f);
    }

    /// Two round trips: each side sees the whole message the other wrote, every sleeper is
    /// woken (a lost wake-up would deadlock the model), and no ring is left over.
    #[test]
    fn no_message_is_torn_and_no_wake_up_is_lost() {
        model(|| {
            let shared = Arc::new(Shared {
                state: AtomicU32::new(0),
                len: AtomicU32::new(0),
                words: [AtomicU64::new(0), AtomicU64::new(0)],
            });
            let (to_host, to_worker) =
                (Arc::new(Doorbell::default()), Arc::new(Doorbell::default()));
            let mut worker_end = End {
                mine: to_worker.clone(),
                theirs: to_host.clone(),
            };
            let worker_shared = shared.clone();
            let worker = loom::thread::spawn(move || {
                let turns = worker_shared.turns();
                let mut message = Vec::new();
                for _ in 0..2 {
                    turns
                        .wait(Side::Worker, Duration::ZERO, &mut worker_end, None)
                        .expect("waited");
                    assert!(turns.take(&mut message).expect("taken"));
                    message.iter_mut().for_each(|b| *b += 1);
                    assert!(turns.put(&message));
                    turns
                        .hand_over(Side::Worker, &mut worker_end)
                        .expect("handed");
                }
            });
            let mut host_end = End {
                mine: to_host.clone(),
                theirs: to_worker.clone(),
            };
            let turns = shared.turns();
            let mut answer = Vec::new();
            for round in 0..2u8 {
                let command = [round; 11];
                assert!(turns.put(&command));
                turns.hand_over(Side::Host, &mut host_end).expect("handed");
                turns
                    .wait(Side::Host, Duration::ZERO, &mut host_end, None)
                    .expect("waited");
                assert!(turns.take(&mut answer).expect("taken"));
                assert_eq!(answer, [round + 1; 11]);
            }
            worker.join().expect("worker");
            assert_eq!(*to_host.rings.lock().expect("lock"), 0);
            assert_eq!(*to_worker.rings.lock().expect("lock"), 0);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct NoBell;
    impl Bell for NoBell {
        fn ring(&mut self) -> io::Result<()> {
            Err(io::Error::other("rang with no sleeper"))
        }
        fn sleep(&mut self, _: Option<Instant>) -> io::Result<()> {
            Err(io::ErrorKind::TimedOut.into())
        }
    }

    #[test]
    fn a_message_too_large_goes_over_the_socket_and_a_forged_length_is_refused() {
        let (state, len) = (AtomicU32::new(0), AtomicU32::new(0));
        let words: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let turns = Turns::new(&state, &len, &words);
        let mut out = Vec::new();
        assert!(turns.put(b"twenty-nine bytes fit in 32.."));
        assert!(turns.take(&mut out).expect("taken"));
        assert_eq!(out, b"twenty-nine bytes fit in 32..");
        assert!(!turns.put(&[7; 33]));
        assert!(!turns.take(&mut out).expect("taken"));
        len.store(40, Ordering::Relaxed);
        assert_eq!(
            turns.take(&mut out).expect_err("forged").kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn a_side_that_does_not_hold_the_buffer_sleeps_and_times_out() {
        let (state, len) = (AtomicU32::new(0), AtomicU32::new(0));
        let words: Vec<AtomicU64> = (0..1).map(|_| AtomicU64::new(0)).collect();
        let turns = Turns::new(&state, &len, &words);
        // The host holds the buffer at first: the worker waits, marks itself asleep, and its
        // bell times out.
        let err = turns
            .wait(Side::Worker, Duration::from_micros(50), &mut NoBell, None)
            .expect_err("not its turn");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(state.load(Ordering::Relaxed), WAITING);
        // Handing over to a sleeper rings its bell.
        assert!(turns.hand_over(Side::Host, &mut NoBell).is_err());
        assert_eq!(state.load(Ordering::Relaxed), Side::Worker as u32);
        turns
            .wait(Side::Worker, Duration::ZERO, &mut NoBell, None)
            .expect("its turn");
    }
}

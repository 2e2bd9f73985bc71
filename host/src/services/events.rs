//! The `events` service: topics with glob subscriptions. The host owns every subscription
//! (keyed by the subscriber's context token) and removes them at teardown, so a re-created or
//! reloaded plugin never receives an event twice. Deliveries run on a dispatcher thread of the
//! host; the queue is bounded, and an event that finds it full is dropped and counted.
//!
//! The dispatcher waits for a busy `serial` plugin only briefly, so that one busy (or stuck)
//! plugin never holds up the others' events. An event it could not deliver is set aside and
//! tried again, every [`RETRY`], after the plugin's earlier events and before its later ones:
//! each plugin still hears its events in the order they were published. What is set aside is
//! bounded by [`EVENT_QUEUE`] too; an event past that is dropped and counted. The test
//! harness's `settle` answers once nothing is set aside either.
//!
//! Every publication is also counted in the catalog of topics seen ([`SeenTopics`], bounded)
//! and offered to the policy's routines ([`Routines`]), which run on a thread of their own.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use airlock_abi::abi::{ContextToken, InvocationKind};
use airlock_abi::wire::CallerInfo;
use parking_lot::Mutex;

use crate::policy::Routine;
use crate::services::catalog::SeenTopics;
use crate::services::delivery::{Deliver, Delivered};
use crate::services::routines::{at_depth, Routines, RunRoutine};
use airlock_abi::manifest::glob_match;

/// Deliveries waiting for the dispatcher before new ones are dropped.
pub const EVENT_QUEUE: usize = 4096;

/// How often the dispatcher tries again the events of plugins that were busy.
const RETRY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
struct Subscription {
    token: ContextToken,
    pattern: String,
}

enum Delivery {
    Event {
        token: ContextToken,
        topic: Arc<str>,
        payload: Arc<[u8]>,
        /// The routine depth it was published at: what a subscriber publishes while handling
        /// it is one routine level deeper, as if published by the routine's target itself.
        depth: u32,
        /// The span current where it was published: the delivery's call span is its child.
        span: tracing::Span,
    },
    /// Answered once everything queued before it has been delivered.
    #[cfg_attr(
        not(feature = "testing"),
        expect(
            dead_code,
            reason = "used by the authors' test harness (feature `testing`)"
        )
    )]
    Settled(SyncSender<()>),
}

/// The host's event bus.
#[derive(Debug)]
pub(crate) struct EventBus {
    subscriptions: Mutex<Vec<Subscription>>,
    queue: Mutex<Option<SyncSender<Delivery>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    dropped: Arc<AtomicU64>,
    seen: SeenTopics,
    routines: Routines,
}

impl EventBus {
    /// Starts the dispatcher thread, which delivers through `host`, and the thread running
    /// `routines` through `runner`.
    pub(crate) fn start(
        host: Weak<dyn Deliver>,
        runner: Weak<dyn RunRoutine>,
        routines: Vec<Routine>,
    ) -> Self {
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let dispatcher = {
            let dropped = dropped.clone();
            std::thread::Builder::new()
                .name("airlock-events".to_owned())
                .spawn(move || dispatch(&rx, &host, &dropped))
                .ok()
        };
        Self {
            subscriptions: Mutex::new(Vec::new()),
            queue: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(dispatcher),
            dropped,
            seen: SeenTopics::default(),
            routines: Routines::start(runner, routines),
        }
    }

    /// Subscribes `token` to `pattern` (once: subscribing twice is one subscription).
    pub(crate) fn subscribe(&self, token: ContextToken, pattern: &str) {
        let mut subs = self.subscriptions.lock();
        if !subs
            .iter()
            .any(|s| s.token == token && s.pattern == pattern)
        {
            subs.push(Subscription {
                token,
                pattern: pattern.to_owned(),
            });
        }
    }

    /// Removes one subscription; true if it existed.
    pub(crate) fn unsubscribe(&self, token: ContextToken, pattern: &str) -> bool {
        let mut subs = self.subscriptions.lock();
        let before = subs.len();
        subs.retain(|s| !(s.token == token && s.pattern == pattern));
        subs.len() != before
    }

    /// Removes every subscription of `token`.
    pub(crate) fn remove_all(&self, token: ContextToken) {
        self.subscriptions.lock().retain(|s| s.token != token);
    }

    /// How many subscriptions `token` holds.
    pub(crate) fn count(&self, token: ContextToken) -> usize {
        self.subscriptions
            .lock()
            .iter()
            .filter(|s| s.token == token)
            .count()
    }

    /// Counts a publication of `from` on `topic` in the catalog, queues a run of every routine
    /// it matches, and queues `payload` for every subscription matching `topic`; returns how
    /// many subscriptions it was queued for.
    pub(crate) fn publish(
        &self,
        from: &CallerInfo,
        topic: &str,
        value: &serde_json::Value,
    ) -> usize {
        self.seen.record(from, topic);
        // Encoded once, and only if a routine or a subscription takes it.
        let encoded: std::cell::OnceCell<Arc<[u8]>> = std::cell::OnceCell::new();
        let payload = || -> Arc<[u8]> {
            encoded
                .get_or_init(|| Arc::from(serde_json::to_vec(value).unwrap_or_default()))
                .clone()
        };
        self.routines.offer(from, topic, value, &payload);
        let targets: Vec<ContextToken> = self
            .subscriptions
            .lock()
            .iter()
            .filter(|s| glob_match(&s.pattern, topic))
            .map(|s| s.token)
            .collect();
        if targets.is_empty() {
            return 0;
        }
        let topic: Arc<str> = Arc::from(topic);
        let payload = payload();
        let queue = self.queue.lock();
        let Some(queue) = queue.as_ref() else {
            return 0;
        };
        let mut queued = 0;
        let depth = crate::services::routines::depth();
        let span = crate::frame::trace::carried();
        for token in targets {
            let delivery = Delivery::Event {
                token,
                topic: topic.clone(),
                payload: payload.clone(),
                depth,
                span: span.clone(),
            };
            if queue.try_send(delivery).is_ok() {
                queued += 1;
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        queued
    }

    /// Waits until every event queued before this call has been delivered.
    #[cfg(feature = "testing")]
    pub(crate) fn settle(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self
            .queue
            .lock()
            .as_ref()
            .is_some_and(|queue| queue.send(Delivery::Settled(tx)).is_ok());
        if sent {
            let _ = rx.recv();
        }
    }

    /// The patterns `token` is subscribed to.
    #[cfg(feature = "testing")]
    pub(crate) fn patterns(&self, token: ContextToken) -> Vec<String> {
        self.subscriptions
            .lock()
            .iter()
            .filter(|s| s.token == token)
            .map(|s| s.pattern.clone())
            .collect()
    }

    /// Events dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The topics published so far.
    pub(crate) fn seen(&self) -> &SeenTopics {
        &self.seen
    }

    /// The policy's routines and their queue.
    pub(crate) fn routines(&self) -> &Routines {
        &self.routines
    }

    /// Stops the dispatcher after the queued deliveries, and the routine thread.
    pub(crate) fn stop(&self) {
        self.routines.stop();
        drop(self.queue.lock().take());
        let handle = self.dispatcher.lock().take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// An event the dispatcher could not deliver yet: for whom, the topic, the payload, the
/// routine depth it was published at, the span it was published in.
type SetAside = (ContextToken, Arc<str>, Arc<[u8]>, u32, tracing::Span);

fn dispatch(rx: &Receiver<Delivery>, host: &Weak<dyn Deliver>, dropped: &AtomicU64) {
    crate::services::delivery::serve_on_this_thread();
    let mut aside: VecDeque<SetAside> = VecDeque::new();
    let mut settled: Vec<SyncSender<()>> = Vec::new();
    let mut tried = Instant::now();
    loop {
        let next = if aside.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(RETRY)
        };
        let Some(host) = host.upgrade() else {
            return;
        };
        match next {
            Ok(Delivery::Event {
                token,
                topic,
                payload,
                depth,
                span,
            }) => {
                // Behind the plugin's events set aside, if it has any: in order.
                let behind = aside.iter().any(|(t, ..)| *t == token);
                if behind
                    || span.in_scope(|| {
                        at_depth(depth, || {
                            host.deliver(token, InvocationKind::EVENT, &topic, &payload)
                        })
                    }) == Delivered::Busy
                {
                    if aside.len() < EVENT_QUEUE {
                        aside.push_back((token, topic, payload, depth, span));
                    } else {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Delivery::Settled(done)) => settled.push(done),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Stopping: one last try for what was set aside; what is still busy is dropped.
                retry(&mut aside, &*host);
                dropped.fetch_add(aside.len() as u64, Ordering::Relaxed);
                return;
            }
        }
        if !aside.is_empty() && tried.elapsed() >= RETRY {
            retry(&mut aside, &*host);
            tried = Instant::now();
        }
        if aside.is_empty() {
            for done in settled.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

/// Tries the events set aside again, in order: the first of each plugin's that is still busy
/// stays, and so do the ones behind it.
fn retry(aside: &mut VecDeque<SetAside>, host: &dyn Deliver) {
    let mut busy: Vec<ContextToken> = Vec::new();
    aside.retain(|(token, topic, payload, depth, span)| {
        if busy.contains(token) {
            return true;
        }
        let still = crate::services::delivery::retrying(|| {
            span.in_scope(|| {
                at_depth(*depth, || {
                    host.deliver(*token, InvocationKind::EVENT, topic, payload)
                })
            })
        }) == Delivered::Busy;
        if still {
            busy.push(*token);
        }
        still
    });
}

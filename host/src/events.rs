//! The `events` service: topics with glob subscriptions. The host owns every subscription
//! (keyed by the subscriber's context token) and removes them at teardown, so a re-created or
//! reloaded plugin never receives an event twice. Deliveries run on a dispatcher thread of the
//! host; the queue is bounded, and an event that finds it full is dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use airlock_abi::abi::{ContextToken, InvocationKind};
use parking_lot::Mutex;

use crate::decide::glob_match;
use crate::delivery::Deliver;

/// Deliveries waiting for the dispatcher before new ones are dropped.
pub const EVENT_QUEUE: usize = 4096;

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
    dropped: AtomicU64,
}

impl EventBus {
    /// Starts the dispatcher thread, which delivers through `host`.
    pub(crate) fn start(host: Weak<dyn Deliver>) -> Self {
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        let dispatcher = std::thread::Builder::new()
            .name("airlock-events".to_owned())
            .spawn(move || dispatch(&rx, &host))
            .ok();
        Self {
            subscriptions: Mutex::new(Vec::new()),
            queue: Mutex::new(Some(tx)),
            dispatcher: Mutex::new(dispatcher),
            dropped: AtomicU64::new(0),
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

    /// Queues `payload` for every subscription matching `topic`; returns how many were queued.
    pub(crate) fn publish(&self, topic: &str, payload: &serde_json::Value) -> usize {
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
        let payload: Arc<[u8]> = Arc::from(serde_json::to_vec(payload).unwrap_or_default());
        let queue = self.queue.lock();
        let Some(queue) = queue.as_ref() else {
            return 0;
        };
        let mut queued = 0;
        for token in targets {
            let delivery = Delivery::Event {
                token,
                topic: topic.clone(),
                payload: payload.clone(),
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

    /// Stops the dispatcher after the queued deliveries.
    pub(crate) fn stop(&self) {
        drop(self.queue.lock().take());
        let handle = self.dispatcher.lock().take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

fn dispatch(rx: &Receiver<Delivery>, host: &Weak<dyn Deliver>) {
    while let Ok(delivery) = rx.recv() {
        match delivery {
            Delivery::Event {
                token,
                topic,
                payload,
            } => {
                let Some(host) = host.upgrade() else {
                    return;
                };
                host.deliver(token, InvocationKind::EVENT, &topic, &payload);
            }
            Delivery::Settled(done) => {
                let _ = done.send(());
            }
        }
    }
}

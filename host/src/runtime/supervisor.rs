//! The host's supervisor threads: the watchdog, which reports calls overrunning their timeout
//! while they are still running (and counts each as a fault), the health poller, which asks
//! every running plugin for its health at the policy's interval, and the restarter, which
//! restarts isolated plugins whose worker died. A restart takes the admin lock and starts a
//! process, so it has a thread of its own: a slow one never delays the watchdog's scans.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// What the supervisor threads do to the runtime they watch.
pub(crate) trait Supervised: Send + Sync {
    /// Reports the calls running past their timeout, and frees what no call reads any more.
    fn watchdog_scan(&self);
    /// Asks every running plugin for its health.
    fn poll_all_health(&self);
    /// Restarts the isolated plugins whose worker died (within their budget).
    fn restart_dead_workers(&self);
    /// Expires the pending answers past their bound (a cheap check but once a second).
    fn expire_pending(&self);
}

/// How often the watchdog scans the calls in progress.
pub const WATCHDOG_TICK: Duration = Duration::from_millis(20);

type StopFlag = Arc<(Mutex<bool>, Condvar)>;

/// The running supervisor threads of one host.
#[derive(Debug)]
pub(crate) struct Supervisor {
    stop: StopFlag,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Supervisor {
    pub(crate) fn start(host: &Weak<dyn Supervised>, health_interval: Duration) -> Self {
        let stop: StopFlag = Arc::new((Mutex::new(false), Condvar::new()));
        let mut threads = Vec::new();
        let spawn = |name: &str, every: Duration, work: fn(&dyn Supervised)| {
            let (host, stop) = (host.clone(), stop.clone());
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    run_every(&stop, every, || {
                        host.upgrade().is_some_and(|h| {
                            work(&*h);
                            true
                        })
                    })
                })
                .ok()
        };
        threads.extend(spawn("airlock-watchdog", WATCHDOG_TICK, |h| {
            h.watchdog_scan()
        }));
        // The same thread expires pending answers, so that expiry is told when it happens,
        // not when someone next reads the store.
        threads.extend(spawn("airlock-restarts", WATCHDOG_TICK, |h| {
            h.restart_dead_workers();
            h.expire_pending();
        }));
        threads.extend(spawn("airlock-health", health_interval, |h| {
            crate::services::delivery::serve_on_this_thread();
            h.poll_all_health()
        }));
        Self {
            stop,
            threads: Mutex::new(threads),
        }
    }

    pub(crate) fn stop(&self) {
        {
            let (flag, cv) = &*self.stop;
            *flag.lock() = true;
            cv.notify_all();
        }
        for handle in self.threads.lock().drain(..) {
            let _ = handle.join();
        }
    }
}

/// Runs `work` every `every` until stopped or until `work` says the host is gone.
fn run_every(stop: &StopFlag, every: Duration, mut work: impl FnMut() -> bool) {
    let (flag, cv) = &**stop;
    loop {
        {
            let mut stopped = flag.lock();
            if !*stopped {
                cv.wait_for(&mut stopped, every);
            }
            if *stopped {
                return;
            }
        }
        if !work() {
            return;
        }
    }
}

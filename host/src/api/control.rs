//! A plugin's request that the host program shut down (`host shutdown`, capability
//! `host.control`, which only the operator grants). It is a request, not an exit: the library
//! records it (and audits who asked and why), hands it to the program's handler
//! ([`HostBuilder::on_shutdown_request`]) and keeps it for [`Host::shutdown_requested`] and
//! [`Host::wait_shutdown_request`]; the program decides what to do. Nothing here ends the
//! process, and the plugin that asked keeps running until the program acts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use super::{Host, HostBuilder};

/// A plugin's request that the host program shut down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShutdownRequest {
    /// The plugin that asked.
    pub plugin: String,
    /// The generation of its instance.
    pub generation: u64,
    /// Why, in its words (printable, at most 1024 characters).
    pub reason: String,
}

impl std::fmt::Display for ShutdownRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin {} (generation {}) asked the host to shut down: {}",
            self.plugin, self.generation, self.reason
        )
    }
}

/// The program's handler of shutdown requests.
type Handler = Arc<dyn Fn(ShutdownRequest) + Send + Sync>;

/// The program's handler as the builder holds it.
#[derive(Default, Clone)]
pub(super) struct OnShutdown(Option<Handler>);

impl std::fmt::Debug for OnShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

/// Where shutdown requests go: the program's handler, and the first request, kept.
#[derive(Default)]
pub(super) struct Shutdowns {
    handler: OnShutdown,
    first: Mutex<Option<ShutdownRequest>>,
    arrived: Condvar,
}

impl Shutdowns {
    pub(super) fn new(handler: OnShutdown) -> Self {
        Self {
            handler,
            ..Self::default()
        }
    }

    /// Keeps `request` if it is the first, wakes whoever waits for one, and hands it to the
    /// program's handler (on the requesting plugin's thread).
    pub(super) fn deliver(&self, request: ShutdownRequest) {
        {
            let mut first = self.first.lock();
            if first.is_none() {
                *first = Some(request.clone());
            }
        }
        self.arrived.notify_all();
        if let Some(handler) = &self.handler.0 {
            handler(request);
        }
    }
}

impl HostBuilder {
    /// Calls `handler` each time a plugin asks the host program to shut down
    /// (`ctx.request_shutdown(reason)`, capability `host.control`, granted by the operator).
    /// It runs on the thread of the plugin's request, which waits for it: keep it short, and
    /// never shut the host down from it (tell the thread that owns the [`Host`] instead). The
    /// library never exits the process; what the request means is the program's decision.
    pub fn on_shutdown_request(
        mut self,
        handler: impl Fn(ShutdownRequest) + Send + Sync + 'static,
    ) -> Self {
        self.on_shutdown = OnShutdown(Some(Arc::new(handler)));
        self
    }
}

impl Host {
    /// The first request a plugin made that the host program shut down, if one did (every
    /// request is in the audit log, outcome `shutdown_requested`).
    pub fn shutdown_requested(&self) -> Option<ShutdownRequest> {
        self.shutdowns.first.lock().clone()
    }

    /// Waits up to `timeout` for a plugin to ask the host program to shut down; the first
    /// request, at once if one was made already, or `None` when the time is up.
    pub fn wait_shutdown_request(&self, timeout: Duration) -> Option<ShutdownRequest> {
        let deadline = Instant::now() + timeout;
        let mut first = self.shutdowns.first.lock();
        while first.is_none() {
            if self
                .shutdowns
                .arrived
                .wait_until(&mut first, deadline)
                .timed_out()
            {
                break;
            }
        }
        first.clone()
    }
}

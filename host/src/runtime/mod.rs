//! The runtime under the embedding API: the plugin table and what serves it ([`HostShared`]),
//! the one invoke path, stages 4 and 5, reloads, serial gates, isolated plugins' restarts,
//! permissions and approvals on the call path, supervision and the directory watcher.

pub(crate) mod approvals;
pub(crate) mod breaker;
pub(crate) mod called;
pub(crate) mod config;
mod counted;
mod deadline;
mod deliver;
mod gate;
mod invoke;
mod isolated;
mod lifecycle;
mod names;
pub(crate) mod outcome;
pub(crate) mod pending;
mod phases;
mod plugin;
mod reload;
mod routines;
mod shared;
pub(crate) mod supervisor;
mod traced;
pub(crate) mod watch;

pub(crate) use plugin::{Invoked, LoadedPlugin};
pub(crate) use shared::{HostShared, Observer};

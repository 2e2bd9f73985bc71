//! Named points in the host's concurrent paths where a test can run code of its own, to make a
//! race happen at exactly the worst moment. Only with the `failpoints` feature, which exists for
//! tests; without it, [`hit`] is empty and inlined away.
//!
//! The points are process-wide: a test that arms one belongs in a test binary of its own.

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::Arc;

    use parking_lot::Mutex;

    type Action = Arc<dyn Fn() + Send + Sync>;

    static POINTS: Mutex<Vec<(&'static str, Action)>> = Mutex::new(Vec::new());

    /// Runs `action` on whatever thread reaches the point `name`, every time, until disarmed.
    pub fn arm(name: &'static str, action: impl Fn() + Send + Sync + 'static) {
        let mut points = POINTS.lock();
        points.retain(|(n, _)| *n != name);
        points.push((name, Arc::new(action)));
    }

    /// Stops running anything at the point `name`.
    pub fn disarm(name: &'static str) {
        POINTS.lock().retain(|(n, _)| *n != name);
    }

    pub(crate) fn hit(name: &'static str) {
        let action = POINTS
            .lock()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.clone());
        if let Some(action) = action {
            action();
        }
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{arm, disarm};

/// The point `name` was reached.
#[inline(always)]
pub(crate) fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    armed::hit(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// A delivery (event or timer run) found the plugin whose running instance has the token it is
/// addressed to, and is about to invoke it.
pub(crate) const DELIVER_MATCHED: &str = "deliver:matched";

/// The supervisor found an isolated plugin's worker dead and its restart due, and is about to
/// take the admin lock to restart it.
pub(crate) const RESTART_DUE: &str = "restart:due";

/// The supervisor is about to restart an isolated plugin whose worker died, holding the admin
/// lock.
pub(crate) const RESTART_LOCKED: &str = "restart:locked";

/// A plugin's subscription request passed the check that its context is not closing, and is
/// about to subscribe.
pub(crate) const SUBSCRIBE_CHECKED: &str = "membrane:subscribe-checked";

/// Teardown removed the timer jobs and subscriptions of the context it closes, and is about to
/// revoke the context (waiting for the host calls in flight).
pub(crate) const CONTEXT_RELEASED: &str = "context:released";

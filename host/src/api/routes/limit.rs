//! At most so many route requests in flight per plugin: one plugin's slow route cannot take
//! every thread of a concurrent server from the others' routes. Over the limit a request is
//! answered `503` at once, without calling the plugin.

use std::collections::HashMap;

use parking_lot::Mutex;

/// How many route requests one plugin may have in flight unless the program says otherwise.
pub const DEFAULT_MAX_ROUTE_CONCURRENCY: usize = 32;

/// The route requests in flight, per plugin id (an id leaves the map when it has none).
#[derive(Debug, Default)]
pub(super) struct RouteSlots {
    in_flight: Mutex<HashMap<String, usize>>,
}

/// A request's place among its plugin's; given back when dropped.
pub(super) struct Slot<'a> {
    slots: &'a RouteSlots,
    plugin: String,
}

impl RouteSlots {
    /// A place for one more request of `plugin`, if it has fewer than `max` in flight.
    pub(super) fn take(&self, plugin: &str, max: usize) -> Option<Slot<'_>> {
        let mut in_flight = self.in_flight.lock();
        let count = in_flight.entry(plugin.to_owned()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self,
            plugin: plugin.to_owned(),
        })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.slots.in_flight.lock();
        if let Some(count) = in_flight.get_mut(&self.plugin) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.plugin);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_over_its_limit_waits_for_nobody_and_others_are_not_counted() {
        let slots = RouteSlots::default();
        let first = slots.take("slow", 2).expect("one");
        let second = slots.take("slow", 2).expect("two");
        assert!(slots.take("slow", 2).is_none(), "a third is over the limit");
        assert!(
            slots.take("fast", 2).is_some(),
            "another plugin has its own"
        );
        drop(first);
        let third = slots.take("slow", 2).expect("a place was given back");
        drop((second, third));
        assert!(slots.in_flight.lock().is_empty(), "no plugin left behind");
    }
}

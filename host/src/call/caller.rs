//! Who asked for the call a thread is serving: a per-thread stack of [`CallerInfo`], pushed
//! where a call is asked for on someone's behalf (a host program naming a principal, a plugin
//! calling another) and read when a plugin asks `ctx.caller()`. Calls nest (a plugin calling a
//! plugin), and each sees the caller of its own call.

use std::cell::RefCell;

use airlock_abi::wire::CallerInfo;

thread_local! {
    static CALLERS: RefCell<Vec<CallerInfo>> = const { RefCell::new(Vec::new()) };
}

/// The caller of the calls made while this lives; the one before it again once dropped.
#[must_use = "the caller is popped when this is dropped"]
pub(crate) struct Calling(());

impl Drop for Calling {
    fn drop(&mut self) {
        let _ = CALLERS.try_with(|c| c.borrow_mut().pop());
    }
}

/// Makes `caller` the caller of the calls this thread makes until the guard is dropped.
pub(crate) fn push(caller: CallerInfo) -> Calling {
    let _ = CALLERS.try_with(|c| c.borrow_mut().push(caller));
    Calling(())
}

/// For a call the host program makes without naming anyone: nothing to do on a thread serving
/// no call (the host is the caller there), and the host marked as the caller when the call is
/// made from inside another (a service handler of the program calling a plugin).
#[inline]
pub(crate) fn host_call() -> Option<Calling> {
    let nested = CALLERS
        .try_with(|c| !c.borrow().is_empty())
        .unwrap_or(false);
    nested.then(|| push(CallerInfo::Host { principal: None }))
}

/// The caller of the call this thread is serving; the host, on behalf of no one, outside any.
pub(crate) fn current() -> CallerInfo {
    CALLERS
        .try_with(|c| c.borrow().last().cloned())
        .ok()
        .flatten()
        .unwrap_or(CallerInfo::Host { principal: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_abi::wire::Principal;

    #[test]
    fn nested_calls_see_their_own_caller_and_the_outer_one_again_after() {
        assert_eq!(current(), CallerInfo::Host { principal: None });
        let alice = CallerInfo::Host {
            principal: Some(Principal::new("alice", &["admin"])),
        };
        let outer = push(alice.clone());
        assert_eq!(current(), alice);
        {
            let plugin = CallerInfo::Plugin {
                id: "a".into(),
                generation: 1,
            };
            let _inner = push(plugin.clone());
            assert_eq!(current(), plugin);
            let _host = host_call().expect("nested, so marked");
            assert_eq!(current(), CallerInfo::Host { principal: None });
        }
        assert_eq!(current(), alice);
        drop(outer);
        assert!(host_call().is_none(), "no call to mark outside any");
    }
}

//! Who asked for the call a thread is serving: the [`CallerInfo`] of the innermost frame that
//! names one, pushed where a call is asked for on someone's behalf (a host program naming a
//! principal, a plugin calling another) and read when a plugin asks `ctx.caller()`. Calls nest
//! (a plugin calling a plugin), and each sees the caller of its own call.

use airlock_abi::wire::CallerInfo;

use super::{enter, in_call, read, Entered, Frame};

/// Makes `caller` the caller of the calls this thread makes until the guard is dropped.
pub(crate) fn push(caller: CallerInfo) -> Entered {
    enter(Frame::caller(caller))
}

/// For a call the host program makes without naming anyone: nothing to do on a thread serving
/// no call (the host is the caller there), and the host marked as the caller when the call is
/// made from inside another (a service handler of the program calling a plugin).
#[inline]
pub(crate) fn host_call() -> Option<Entered> {
    in_call().then(|| push(CallerInfo::Host { principal: None }))
}

/// The caller of the call this thread is serving; the host, on behalf of no one, outside any.
pub(crate) fn current() -> CallerInfo {
    read(|frames| frames.iter().rev().find_map(|f| f.caller.clone()))
        .unwrap_or(CallerInfo::Host { principal: None })
}

/// Whether the caller of the call this thread is serving is the host on behalf of no one (what
/// [`current`] answers outside any call): read without a clone.
pub(crate) fn is_host_alone() -> bool {
    !read(|frames| {
        frames
            .iter()
            .rev()
            .find_map(|f| f.caller.as_ref())
            .is_some_and(|c| *c != CallerInfo::Host { principal: None })
    })
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

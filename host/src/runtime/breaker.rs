//! Circuit breakers on dispatch, one per (plugin, action). Per action, not per plugin: a claim
//! and a routine each reach one action, and one failing handler should not take its plugin's
//! healthy ones down with it; the quarantine already answers for a plugin that faults as a
//! whole. A breaker is closed (calls go through, failures in a row are counted), open (calls
//! are refused `breaker_open` without reaching the plugin, until the cooldown is over) or half
//! open (one call, the probe, goes through: its success closes the breaker, its failure opens
//! it again). Each admitted dispatch holds a [`Ticket`] saying whether it is the probe, so a
//! call still in flight from before the breaker opened never decides for the probe, and a
//! probe that unwinds still ends. The state is a small map behind a mutex, taken only by
//! dispatches (never by direct calls) to plugins whose policy sets a breaker.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::called::{refuse, Called};
use super::HostShared;
use crate::error::{CallError, CallErrorCode};
use crate::policy::retry::RetryPolicy;
use crate::policy::BreakerPolicy;
use crate::services::audit::AuditOutcome;

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused (`breaker_open`) until the cooldown is over.
    Open,
    /// One call is probing the action; others are refused until it ends.
    HalfOpen,
}

/// What [`crate::PluginInfo`] shows of one action's breaker (only actions dispatched to since
/// the host started, while their plugin's policy sets a breaker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerInfo {
    /// The action.
    pub action: String,
    /// Where its breaker is.
    pub state: BreakerState,
    /// Failed dispatches in a row (closed), or that opened it (open, half open).
    pub failures: u32,
    /// How long until an open breaker lets a probe through.
    pub retry_in: Option<Duration>,
}

/// A change of state, to audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

/// How a dispatch ended, for its breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The action answered (its answer, or an error it did not mark retryable).
    Success,
    /// It failed: panicked, timed out, its worker died, or it answered retryable past its
    /// retries.
    Failure,
    /// Neither the action's success nor its failure (the caller's input, a permission, a
    /// cancellation, a busy serial plugin): counts for nothing.
    Neutral,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    state: State,
    failures: u32,
    /// Counts the breaker's changes of state: a probe's ticket holds the epoch its half-open
    /// state began with, so that only that probe ends it.
    epoch: u64,
}

/// The breakers of a host's dispatched actions.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    map: Mutex<HashMap<(String, String), Breaker>>,
}

/// A dispatch let through by its breaker: the probe of a half-open breaker, or a call of a
/// closed one. Only the probe's outcome moves a half-open breaker; a call let through while it
/// was closed counts only if it is still closed when the call ends (a call still in flight
/// when the breaker opened neither closes nor reopens it, nor lets a second probe in). A
/// ticket dropped without [`Ticket::end`] — its dispatch unwound — ends as
/// [`Verdict::Neutral`]: a probe's breaker goes back to open, the next dispatch probing again,
/// never left half open with nobody probing.
#[derive(Debug)]
pub(crate) struct Ticket<'b> {
    breakers: &'b Breakers,
    key: (String, String),
    policy: BreakerPolicy,
    probe: bool,
    epoch: u64,
    admitted: Instant,
    ended: bool,
}

impl Ticket<'_> {
    /// Whether this dispatch probes a half-open breaker (its admission half-opened it).
    pub(crate) fn probes(&self) -> bool {
        self.probe
    }

    /// Counts how the dispatch ended, at `now`; the change it made.
    pub(crate) fn end(mut self, verdict: Verdict, now: Instant) -> Option<Transition> {
        self.ended = true;
        self.breakers.record(&self, verdict, now)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.breakers.record(self, Verdict::Neutral, self.admitted);
        }
    }
}

impl Breakers {
    /// Whether a dispatch to `action` of `plugin` may go through at `now`: its ticket (an open
    /// breaker past its cooldown half-opens, and this dispatch is its probe), or how long the
    /// breaker stays open (`None`: another dispatch is probing it).
    pub(crate) fn admit(
        &self,
        plugin: &str,
        action: &str,
        policy: &BreakerPolicy,
        now: Instant,
    ) -> Result<Ticket<'_>, Option<Duration>> {
        let key = (plugin.to_owned(), action.to_owned());
        let mut map = self.map.lock();
        let breaker = map.entry(key.clone()).or_insert(Breaker {
            state: State::Closed,
            failures: 0,
            epoch: 0,
        });
        let probe = match breaker.state {
            State::Closed => false,
            State::HalfOpen => return Err(None),
            State::Open { until } if now < until => return Err(Some(until - now)),
            State::Open { .. } => {
                breaker.state = State::HalfOpen;
                breaker.epoch += 1;
                true
            }
        };
        Ok(Ticket {
            breakers: self,
            key,
            policy: *policy,
            probe,
            epoch: breaker.epoch,
            admitted: now,
            ended: false,
        })
    }

    /// Counts how the dispatch of `ticket` ended; the change it made.
    fn record(&self, ticket: &Ticket<'_>, verdict: Verdict, now: Instant) -> Option<Transition> {
        let mut map = self.map.lock();
        let breaker = map.get_mut(&ticket.key)?;
        let open = State::Open {
            until: now + ticket.policy.cooldown,
        };
        let (state, transition) = match (breaker.state, ticket.probe, verdict) {
            // The probe of this half-open state decides.
            (State::HalfOpen, true, _) if breaker.epoch == ticket.epoch => match verdict {
                Verdict::Success => {
                    breaker.failures = 0;
                    (State::Closed, Some(Transition::Closed))
                }
                Verdict::Failure => (open, Some(Transition::Opened)),
                // The probe told nothing: the next dispatch probes again.
                Verdict::Neutral => (State::Open { until: now }, None),
            },
            (State::Closed, false, Verdict::Success) => {
                breaker.failures = 0;
                return None;
            }
            (State::Closed, false, Verdict::Failure) => {
                breaker.failures = breaker.failures.saturating_add(1);
                if breaker.failures < ticket.policy.failures {
                    return None;
                }
                (open, Some(Transition::Opened))
            }
            // A neutral outcome, or a call that began before the breaker last changed and
            // ended while it is open or half open: it counts for nothing.
            _ => return None,
        };
        breaker.state = state;
        breaker.epoch += 1;
        transition
    }

    /// The breakers of `plugin`'s actions, by action.
    pub(crate) fn of(&self, plugin: &str, now: Instant) -> Vec<BreakerInfo> {
        let map = self.map.lock();
        let mut out: Vec<BreakerInfo> = map
            .iter()
            .filter(|((p, _), _)| p == plugin)
            .map(|((_, action), b)| BreakerInfo {
                action: action.clone(),
                state: match b.state {
                    State::Closed => BreakerState::Closed,
                    State::Open { .. } => BreakerState::Open,
                    State::HalfOpen => BreakerState::HalfOpen,
                },
                failures: b.failures,
                retry_in: match b.state {
                    State::Open { until } => Some(until.saturating_duration_since(now)),
                    _ => None,
                },
            })
            .collect();
        out.sort_by(|a, b| a.action.cmp(&b.action));
        out
    }
}

impl HostShared {
    /// A dispatch of `action` of `plugin` with its retries ([`HostShared::call_retrying`]),
    /// behind the action's breaker when the plugin's policy sets one: refused `breaker_open`
    /// without reaching the plugin while the breaker is open (no attempt made), and counted
    /// when it ends. Every change of a breaker's state is audited.
    pub(crate) fn call_retried(
        &self,
        plugin: &str,
        action: &str,
        input: &[u8],
        retry: &RetryPolicy,
        out: &mut Vec<u8>,
    ) -> Result<(u32, Called), CallError> {
        let guarded = self
            .find(plugin)
            .map(|p| (p.policy.breaker, p.generation.load(Ordering::Relaxed)))
            .filter(|(policy, _)| policy.failures > 0);
        let Some((policy, generation)) = guarded else {
            return self.call_retrying(plugin, action, input, retry, out);
        };
        let audit = |t: Option<Transition>| {
            if let Some(t) = t {
                self.audit_breaker(plugin, generation, action, t, &policy);
            }
        };
        let ticket = match self.breakers.admit(plugin, action, &policy, Instant::now()) {
            Ok(ticket) => ticket,
            Err(left) => {
                let when = match left {
                    Some(left) => format!("lets a call probe it in {} ms", left.as_millis()),
                    None => "is probing it with another call".to_owned(),
                };
                let called = refuse(
                    out,
                    CallErrorCode::BreakerOpen,
                    format_args!(
                        "{plugin}.{action} failed {} times in a row: its circuit breaker is open \
                         and {when}",
                        policy.failures
                    ),
                );
                return Ok((0, called));
            }
        };
        if ticket.probes() {
            audit(Some(Transition::HalfOpened));
        }
        let result = self.call_retrying(plugin, action, input, retry, out);
        let verdict = match &result {
            Ok((_, Called::Answered | Called::Domain | Called::Deferred)) => Verdict::Success,
            Ok((_, Called::Retryable)) => Verdict::Failure,
            Ok((
                _,
                Called::Failed(
                    CallErrorCode::HandlerError
                    | CallErrorCode::Panicked
                    | CallErrorCode::Timeout
                    | CallErrorCode::WorkerFailure,
                ),
            )) => Verdict::Failure,
            Ok((_, Called::Failed(_) | Called::Pending)) | Err(_) => Verdict::Neutral,
        };
        audit(ticket.end(verdict, Instant::now()));
        result
    }

    fn audit_breaker(
        &self,
        plugin: &str,
        generation: u64,
        action: &str,
        transition: Transition,
        policy: &BreakerPolicy,
    ) {
        let (outcome, detail) = match transition {
            Transition::Opened => (
                AuditOutcome::BreakerOpened,
                format!(
                    "{plugin}.{action} failed {} times in a row (or its probe failed): dispatches \
                     are refused for {} ms",
                    policy.failures,
                    policy.cooldown.as_millis()
                ),
            ),
            Transition::HalfOpened => (
                AuditOutcome::BreakerHalfOpen,
                format!("{plugin}.{action}: the cooldown is over; one dispatch probes it"),
            ),
            Transition::Closed => (
                AuditOutcome::BreakerClosed,
                format!("{plugin}.{action}: the probe succeeded; dispatches go through again"),
            ),
        };
        let capability = format!("breaker:{action}");
        self.audit
            .record(plugin, generation, &capability, outcome, &detail);
        tracing::warn!(plugin, action, ?outcome, "{detail}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy {
        failures: 3,
        cooldown: Duration::from_secs(10),
    };

    fn admit(breakers: &Breakers, at: Instant) -> Result<Ticket<'_>, Option<Duration>> {
        breakers.admit("p", "a", &POLICY, at)
    }

    fn state(breakers: &Breakers, at: Instant) -> (BreakerState, u32) {
        let shown = breakers.of("p", at);
        (shown[0].state, shown[0].failures)
    }

    /// Opens the breaker of `p.a` at `at` with three failed calls.
    fn opened(breakers: &Breakers, at: Instant) {
        for n in 1..=3 {
            let t = admit(breakers, at).expect("closed");
            let expected = (n == 3).then_some(Transition::Opened);
            assert_eq!(t.end(Verdict::Failure, at), expected, "failure {n}");
        }
    }

    #[test]
    fn a_breaker_opens_after_its_failures_probes_after_its_cooldown_and_closes_or_reopens() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        let call = |v, at| admit(&breakers, at).expect("let through").end(v, at);
        assert_eq!(call(Verdict::Failure, t0), None);
        assert_eq!(call(Verdict::Failure, t0), None);
        // A success in between starts the count again; neutral outcomes do not count.
        assert_eq!(call(Verdict::Success, t0), None);
        assert_eq!(call(Verdict::Failure, t0), None);
        assert_eq!(call(Verdict::Neutral, t0), None);
        assert_eq!(call(Verdict::Failure, t0), None);
        assert_eq!(call(Verdict::Failure, t0), Some(Transition::Opened));
        assert_eq!(
            admit(&breakers, t0 + Duration::from_secs(4)).map(|t| t.probes()),
            Err(Some(Duration::from_secs(6)))
        );
        // Another action of the plugin is not concerned.
        assert!(breakers.admit("p", "b", &POLICY, t0).is_ok());
        let later = t0 + Duration::from_secs(10);
        let probe = admit(&breakers, later).expect("probe");
        assert!(probe.probes());
        assert_eq!(
            admit(&breakers, later).map(|t| t.probes()),
            Err(None),
            "one probe at a time"
        );
        assert_eq!(probe.end(Verdict::Failure, later), Some(Transition::Opened));
        assert!(admit(&breakers, later).is_err());
        let again = later + Duration::from_secs(10);
        let probe = admit(&breakers, again).expect("probe");
        assert_eq!(probe.end(Verdict::Neutral, again), None);
        let probe = admit(&breakers, again).expect("probes again");
        assert!(probe.probes());
        assert_eq!(probe.end(Verdict::Success, again), Some(Transition::Closed));
        assert!(!admit(&breakers, again).expect("closed").probes());
        assert_eq!(state(&breakers, again), (BreakerState::Closed, 0));
    }

    #[test]
    fn calls_in_flight_when_the_breaker_opened_do_not_decide_for_its_probe() {
        for (verdict, name) in [
            (Verdict::Success, "success"),
            (Verdict::Failure, "failure"),
            (Verdict::Neutral, "neutral"),
        ] {
            let breakers = Breakers::default();
            let t0 = Instant::now();
            // A slow call goes through while the breaker is closed, and is still running
            // when three others fail and open it, and after the cooldown, when a probe goes.
            let slow = admit(&breakers, t0).expect("closed");
            opened(&breakers, t0);
            let later = t0 + Duration::from_secs(10);
            let probe = admit(&breakers, later).expect("probe");
            assert!(probe.probes());
            // The slow call ends: it neither closes nor reopens the breaker, nor lets a second
            // probe in.
            assert_eq!(slow.end(verdict, later), None, "{name}");
            assert_eq!(state(&breakers, later).0, BreakerState::HalfOpen, "{name}");
            assert_eq!(
                admit(&breakers, later).map(|t| t.probes()),
                Err(None),
                "{name}: one probe at a time"
            );
            // The probe decides.
            assert_eq!(
                probe.end(Verdict::Success, later),
                Some(Transition::Closed),
                "{name}"
            );
            assert_eq!(state(&breakers, later), (BreakerState::Closed, 0), "{name}");
        }
    }

    #[test]
    fn a_call_ending_while_the_breaker_is_open_does_not_count() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        let slow = admit(&breakers, t0).expect("closed");
        let slower = admit(&breakers, t0).expect("closed");
        opened(&breakers, t0);
        // Ended while open: a success does not clear the failures that opened it, a failure
        // does not open it again for a new cooldown.
        let soon = t0 + Duration::from_secs(5);
        assert_eq!(slow.end(Verdict::Success, soon), None);
        assert_eq!(slower.end(Verdict::Failure, soon), None);
        assert_eq!(state(&breakers, soon), (BreakerState::Open, 3));
        assert_eq!(
            admit(&breakers, soon).map(|t| t.probes()),
            Err(Some(Duration::from_secs(5)))
        );
        assert!(admit(&breakers, t0 + Duration::from_secs(10))
            .expect("probe at the first cooldown's end")
            .probes());
    }

    #[test]
    fn a_call_from_before_the_breaker_opened_counts_once_it_is_closed_again() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        let slow = admit(&breakers, t0).expect("closed");
        opened(&breakers, t0);
        let later = t0 + Duration::from_secs(10);
        let probe = admit(&breakers, later).expect("probe");
        assert_eq!(probe.end(Verdict::Success, later), Some(Transition::Closed));
        assert_eq!(slow.end(Verdict::Failure, later), None);
        assert_eq!(state(&breakers, later), (BreakerState::Closed, 1));
    }

    #[test]
    fn a_probe_that_unwinds_leaves_the_breaker_open_for_the_next_probe() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        opened(&breakers, t0);
        let later = t0 + Duration::from_secs(10);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let probe = admit(&breakers, later).expect("probe");
            assert!(probe.probes());
            panic!("the dispatch unwinds with its probe's ticket");
        }));
        assert!(unwound.is_err());
        assert_eq!(state(&breakers, later), (BreakerState::Open, 3));
        let next = admit(&breakers, later).expect("the next dispatch probes");
        assert!(next.probes());
        // A probe dropped without an outcome, likewise; a plain call's drop changes nothing.
        drop(next);
        let next = admit(&breakers, later).expect("the next dispatch probes");
        assert_eq!(next.end(Verdict::Success, later), Some(Transition::Closed));
        drop(admit(&breakers, later).expect("closed"));
        assert_eq!(state(&breakers, later), (BreakerState::Closed, 0));
    }
}

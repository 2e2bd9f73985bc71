//! Circuit breakers on dispatch, one per (plugin, action). Per action, not per plugin: a claim
//! and a routine each reach one action, and one failing handler should not take its plugin's
//! healthy ones down with it; the quarantine already answers for a plugin that faults as a
//! whole. A breaker is closed (calls go through, failures in a row are counted), open (calls
//! are refused `breaker_open` without reaching the plugin, until the cooldown is over) or half
//! open (one call, the probe, goes through: its success closes the breaker, its failure opens
//! it again). The state is a small map behind a mutex, taken only by dispatches (never by
//! direct calls) to plugins whose policy sets a breaker.

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
}

/// The breakers of a host's dispatched actions.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    map: Mutex<HashMap<(String, String), Breaker>>,
}

impl Breakers {
    /// Whether a dispatch to `action` of `plugin` may go through now (`Err`: how long the
    /// breaker stays open), and the change it made (an open breaker past its cooldown lets
    /// this call probe).
    pub(crate) fn admit(
        &self,
        plugin: &str,
        action: &str,
        now: Instant,
    ) -> Result<Option<Transition>, Option<Duration>> {
        let mut map = self.map.lock();
        let Some(breaker) = map.get_mut(&(plugin.to_owned(), action.to_owned())) else {
            return Ok(None);
        };
        match breaker.state {
            State::Closed => Ok(None),
            State::HalfOpen => Err(None),
            State::Open { until } if now < until => Err(Some(until - now)),
            State::Open { .. } => {
                breaker.state = State::HalfOpen;
                Ok(Some(Transition::HalfOpened))
            }
        }
    }

    /// Counts how a dispatch that was let through ended; the change it made.
    pub(crate) fn record(
        &self,
        plugin: &str,
        action: &str,
        policy: &BreakerPolicy,
        verdict: Verdict,
        now: Instant,
    ) -> Option<Transition> {
        let mut map = self.map.lock();
        let breaker = map
            .entry((plugin.to_owned(), action.to_owned()))
            .or_insert(Breaker {
                state: State::Closed,
                failures: 0,
            });
        let open = State::Open {
            until: now + policy.cooldown,
        };
        match (breaker.state, verdict) {
            (State::HalfOpen, Verdict::Success) => {
                *breaker = Breaker {
                    state: State::Closed,
                    failures: 0,
                };
                Some(Transition::Closed)
            }
            (State::HalfOpen, Verdict::Failure) => {
                breaker.state = open;
                Some(Transition::Opened)
            }
            // The probe told nothing: the next dispatch probes again.
            (State::HalfOpen, Verdict::Neutral) => {
                breaker.state = State::Open { until: now };
                None
            }
            (_, Verdict::Success) => {
                breaker.failures = 0;
                None
            }
            (State::Closed, Verdict::Failure) => {
                breaker.failures = breaker.failures.saturating_add(1);
                (breaker.failures >= policy.failures).then(|| {
                    breaker.state = open;
                    Transition::Opened
                })
            }
            _ => None,
        }
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
        match self.breakers.admit(plugin, action, Instant::now()) {
            Ok(t) => audit(t),
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
        audit(
            self.breakers
                .record(plugin, action, &policy, verdict, Instant::now()),
        );
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

    #[test]
    fn a_breaker_opens_after_its_failures_probes_after_its_cooldown_and_closes_or_reopens() {
        let policy = BreakerPolicy {
            failures: 3,
            cooldown: Duration::from_secs(10),
        };
        let breakers = Breakers::default();
        let t0 = Instant::now();
        let record = |v, at| breakers.record("p", "a", &policy, v, at);
        assert_eq!(breakers.admit("p", "a", t0), Ok(None));
        assert_eq!(record(Verdict::Failure, t0), None);
        assert_eq!(record(Verdict::Failure, t0), None);
        // A success in between starts the count again; neutral outcomes do not count.
        assert_eq!(record(Verdict::Success, t0), None);
        assert_eq!(record(Verdict::Failure, t0), None);
        assert_eq!(record(Verdict::Neutral, t0), None);
        assert_eq!(record(Verdict::Failure, t0), None);
        assert_eq!(record(Verdict::Failure, t0), Some(Transition::Opened));
        assert_eq!(
            breakers.admit("p", "a", t0 + Duration::from_secs(4)),
            Err(Some(Duration::from_secs(6)))
        );
        // Another action of the plugin is not concerned.
        assert_eq!(breakers.admit("p", "b", t0), Ok(None));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            breakers.admit("p", "a", later),
            Ok(Some(Transition::HalfOpened))
        );
        assert_eq!(
            breakers.admit("p", "a", later),
            Err(None),
            "one probe at a time"
        );
        assert_eq!(record(Verdict::Failure, later), Some(Transition::Opened));
        assert!(breakers.admit("p", "a", later).is_err());
        let again = later + Duration::from_secs(10);
        assert_eq!(
            breakers.admit("p", "a", again),
            Ok(Some(Transition::HalfOpened))
        );
        assert_eq!(record(Verdict::Neutral, again), None);
        assert_eq!(
            breakers.admit("p", "a", again),
            Ok(Some(Transition::HalfOpened))
        );
        assert_eq!(record(Verdict::Success, again), Some(Transition::Closed));
        assert_eq!(breakers.admit("p", "a", again), Ok(None));
        let shown = breakers.of("p", again);
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].state, shown[0].failures),
            (BreakerState::Closed, 0)
        );
    }
}

//! How `host.dispatch` retries a claim holder's retryable answers: a bounded number of
//! attempts, each after a delay that doubles up to a cap, drawn between half and all of it
//! (jitter, so that callers retrying together spread out).

use std::time::Duration;

/// The retries the policy sets when it says nothing: 3 more attempts, backing off from 100 ms,
/// never more than 5 s.
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    retries: 3,
    backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(5),
};

/// How `host.dispatch` retries a retryable answer: up to `retries` more attempts, the n-th
/// (from 0) after a delay drawn between half and all of `min(backoff × 2ⁿ, max_backoff)`. Set
/// in the policy with `dispatch_retries`, `dispatch_backoff_ms` and `dispatch_backoff_max_ms`,
/// in `[defaults]` or per plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// The first delay's ceiling.
    pub backoff: Duration,
    /// No delay's ceiling exceeds this.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// This policy with what a policy file sets instead.
    pub(crate) fn with(
        self,
        retries: Option<u32>,
        backoff_ms: Option<u64>,
        max_ms: Option<u64>,
    ) -> Self {
        Self {
            retries: retries.unwrap_or(self.retries),
            backoff: backoff_ms.map_or(self.backoff, Duration::from_millis),
            max_backoff: max_ms.map_or(self.max_backoff, Duration::from_millis),
        }
    }
}

/// A number in `[0, 1)` from random bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The delay before retry `n` (from 0): between half and all of `min(backoff × 2ⁿ,
/// max_backoff)`, where in that range `unit` (in `[0, 1)`) says.
pub(crate) fn backoff(retry: &RetryPolicy, n: u32, unit: f64) -> Duration {
    let ceiling = retry
        .backoff
        .saturating_mul(1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX))
        .min(retry.max_backoff);
    ceiling / 2 + ceiling.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_bounds_and_stops_at_the_cap() {
        let retry = RetryPolicy {
            retries: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        let ms = |n, u| backoff(&retry, n, u).as_millis();
        assert_eq!((ms(0, 0.0), ms(0, 0.999_999)), (50, 99));
        assert_eq!((ms(1, 0.0), ms(2, 0.0), ms(3, 0.0)), (100, 200, 400));
        // Capped from the fifth on (1600 ms > 1000 ms), however large n gets.
        assert_eq!((ms(4, 0.0), ms(40, 0.999_999)), (500, 999));
        let draws: Vec<f64> = (0..1000u64)
            .map(|i| unit(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn a_policy_file_overrides_only_what_it_sets() {
        let set = DEFAULT_RETRY.with(Some(1), None, Some(50));
        assert_eq!(
            (set.retries, set.backoff, set.max_backoff),
            (1, DEFAULT_RETRY.backoff, Duration::from_millis(50))
        );
    }
}

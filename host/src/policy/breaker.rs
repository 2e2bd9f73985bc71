//! The circuit breaker on dispatch: after `failures` failed dispatches in a row to one action,
//! the host stops calling it for `cooldown`, then lets one call through to probe it. Set with
//! `breaker = { failures = 5, cooldown_ms = 30000 }` in `[defaults]` or per plugin; off unless
//! set.

use std::time::Duration;

use serde::Deserialize;

/// The breaker the policy sets when it says nothing: off.
pub const DEFAULT_BREAKER: BreakerPolicy = BreakerPolicy {
    failures: 0,
    cooldown: Duration::from_secs(30),
};

/// When dispatch gives a failing action a rest: after `failures` failed dispatches to it in a
/// row (0: never), for `cooldown`; then one call probes it, and closes the breaker if it
/// succeeds or opens it again if it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failed dispatches in a row that open the breaker (0: no breaker).
    pub failures: u32,
    /// How long an open breaker refuses calls before it lets one probe through.
    pub cooldown: Duration,
}

/// `breaker = { failures, cooldown_ms }` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    failures: Option<u32>,
    cooldown_ms: Option<u64>,
}

/// `base` with what `[table] breaker` sets over it.
pub(super) fn breaker(
    base: BreakerPolicy,
    raw: Option<RawBreaker>,
    table: &str,
) -> Result<BreakerPolicy, String> {
    let Some(raw) = raw else {
        return Ok(base);
    };
    let policy = BreakerPolicy {
        failures: raw.failures.unwrap_or(base.failures),
        cooldown: raw.cooldown_ms.map_or(base.cooldown, Duration::from_millis),
    };
    if policy.failures > 0 && policy.cooldown.is_zero() {
        return Err(format!(
            "[{table}] breaker: cooldown_ms must be more than 0 (or failures = 0 for no breaker)"
        ));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Policy, PolicyFormat};
    use airlock_abi::manifest::PluginId;

    #[test]
    fn a_breaker_is_off_unless_set_and_a_plugin_overrides_the_defaults() {
        let policy = Policy::parse(
            "[defaults]\nbreaker = { failures = 5, cooldown_ms = 30000 }\n\
             [plugins.a]\nbreaker = { failures = 2 }\n[plugins.b]\nbreaker = { failures = 0 }\n",
            PolicyFormat::Toml,
        )
        .expect("parses");
        let of = |id: &str| policy.for_plugin(&PluginId::new(id).expect("id")).breaker;
        assert_eq!(
            of("a"),
            BreakerPolicy {
                failures: 2,
                cooldown: Duration::from_secs(30)
            }
        );
        assert_eq!(of("b").failures, 0);
        assert_eq!(of("c").failures, 5);
        assert_eq!(Policy::default().defaults().breaker, DEFAULT_BREAKER);
        let err = Policy::parse(
            "[plugins.a]\nbreaker = { failures = 1, cooldown_ms = 0 }\n",
            PolicyFormat::Toml,
        )
        .expect_err("zero cooldown");
        assert!(err.contains("[plugins.a] breaker"), "{err}");
    }
}

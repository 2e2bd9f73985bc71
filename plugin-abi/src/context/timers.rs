//! Timer jobs the host runs for the plugin ([`Context::timers`], capability `timers`): at an
//! interval or on a cron schedule.

use std::time::Duration;

use super::Context;
use crate::error::ContextError;
use crate::wire::{self, Request};

/// Interval and cron jobs.
#[derive(Debug, Clone, Copy)]
pub struct Timers<'c> {
    pub(super) ctx: &'c Context,
}

impl Timers<'_> {
    /// Runs `Plugin::on_job` (by default `on_timer(name)`) every `interval` (the gap between the
    /// end of one run and the start of the next, so a slow job never piles up). The host
    /// cancels every job when the plugin is torn down.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `timers`; `BadRequest` if the plugin
    /// already has a job of this name (cancel it first to change it).
    pub fn every(&self, name: &str, interval: Duration) -> Result<(), ContextError> {
        let interval_ms = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.ctx.call_service(
            Request::TimersEvery,
            &wire::Every {
                name: name.to_owned(),
                interval_ms,
            },
        )
    }

    /// Cancels the job `name`; true if there was one.
    ///
    /// # Errors
    ///
    /// [`ContextError`] from the host.
    pub fn cancel(&self, name: &str) -> Result<bool, ContextError> {
        self.ctx.call_service(
            Request::TimersCancel,
            &wire::Name {
                name: name.to_owned(),
            },
        )
    }

    /// Runs `Plugin::on_job` (by default `on_timer(name)`) whenever the 5-field cron
    /// `expression` matches, in UTC: minute, hour, day of month, month, day of week
    /// (`*/15 * * * *`, `0 9 * * MON-FRI`). A run still going when the next is due makes that
    /// one skipped, never overlapped. The host cancels every job when the plugin is torn down.
    ///
    /// # Errors
    ///
    /// [`ContextError::CapabilityViolation`] without `timers`; `BadRequest` for an expression
    /// that is not 5 valid fields or a name the plugin already uses.
    pub fn cron(&self, name: &str, expression: &str) -> Result<(), ContextError> {
        self.ctx.call_service(
            Request::TimersCron,
            &wire::CronJob {
                name: name.to_owned(),
                expression: expression.to_owned(),
            },
        )
    }
}

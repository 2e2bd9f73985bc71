//! The `timers` service's operations: interval and cron jobs, and cancelling one; each needs
//! the `timers` capability (checked before the input is read). A job is owned by the host and
//! keyed by the context's token, so teardown cancels it; one scheduled as teardown begins is
//! refused or undone.

use std::time::Duration;

use airlock_abi::abi::HostError;
use airlock_abi::manifest::CapabilityKind::Timers;
use airlock_abi::wire::{self, Request};

use super::row::{check_name, row, Grant::Unscoped};
use super::{bad_request, refuse_when_closing, undo_when_closing};
use crate::services::registry::{BuiltIn, Requester};
use crate::services::timers::{parse_cron, Schedule};

/// One row per operation.
pub(super) fn rows() -> Vec<Box<dyn BuiltIn>> {
    vec![
        row(Request::TimersEvery, Unscoped(Timers), every),
        row(Request::TimersCron, Unscoped(Timers), cron),
        row(Request::TimersCancel, Unscoped(Timers), cancel),
    ]
}

fn every(r: &dyn Requester, req: wire::Every) -> Result<(), HostError> {
    check_name("job name", &req.name)?;
    refuse_when_closing(r)?;
    let every = Schedule::Every(Duration::from_millis(req.interval_ms.max(1)));
    schedule(r, &req.name, every)
}

fn cron(r: &dyn Requester, req: wire::CronJob) -> Result<(), HostError> {
    check_name("job name", &req.name)?;
    refuse_when_closing(r)?;
    let cron = parse_cron(&req.expression).map_err(bad_request)?;
    schedule(r, &req.name, Schedule::Cron(Box::new(cron)))
}

/// Schedules the job `name`, undone if teardown began meanwhile.
fn schedule(r: &dyn Requester, name: &str, schedule: Schedule) -> Result<(), HostError> {
    let timers = r.host().timers();
    timers
        .schedule(r.token(), name, schedule)
        .map_err(bad_request)?;
    undo_when_closing(r, || timers.cancel(r.token(), name))
}

/// `timers cancel`: whether a job was cancelled.
fn cancel(r: &dyn Requester, req: wire::Name) -> Result<bool, HostError> {
    Ok(r.host().timers().cancel(r.token(), &req.name))
}

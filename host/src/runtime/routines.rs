//! The runtime's side of events declared and routed: a plugin's publication checked against
//! the schema its manifest declares for the topic, the event catalog (declared and seen
//! topics), and the policy's routines run ([`RunRoutine`]) — each a call of the target's action
//! with the event's payload, on behalf of the publisher, through the one call path (the
//! target's permission rules, quarantine, timeouts, faults), retried like a dispatch on a
//! retryable answer, audited once per run and kept in [`crate::Host::routine_runs`].

use std::sync::atomic::Ordering;

use airlock_abi::manifest::PluginId;
use airlock_abi::wire::CallerInfo;

use super::called::{message, Called};
use super::shared::HostShared;
use crate::policy::Routine;
use crate::services::audit::AuditOutcome;
use crate::services::catalog::{publisher_name, DeclaredTopic, EventCatalog};
use crate::services::routines::{RoutineJob, RoutineOutcome, RoutineRun, RunRoutine};

impl HostShared {
    /// Whether `payload` fits every schema declared for `topic`: the one `plugin` (the
    /// instance of `generation`, or the running one) declares, and those of every other loaded
    /// plugin that declares the topic — a declaration binds whoever publishes on it. A topic
    /// no one declares a schema for takes anything.
    ///
    /// # Errors
    ///
    /// The schema's message: where the payload breaks it and which rule (and, for another
    /// plugin's schema, whose it is).
    pub(crate) fn check_event(
        &self,
        plugin: &PluginId,
        generation: u64,
        topic: &str,
        payload: &serde_json::Value,
    ) -> Result<(), String> {
        let table = self.table();
        let mut mine = table.iter().filter(|p| p.id() == plugin);
        let own = mine
            .clone()
            .find(|p| p.generation.load(Ordering::SeqCst) == generation)
            .or_else(|| mine.next_back());
        if let Some(schemas) = own.and_then(|p| p.schemas.as_ref()) {
            schemas.check_event(topic, payload)?;
        }
        for other in table.iter().filter(|p| p.id() != plugin) {
            if let Some(schemas) = &other.schemas {
                schemas.check_event(topic, payload).map_err(|message| {
                    format!(
                        "{message} (the schema plugin {} declares for it)",
                        other.id()
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The topics the loaded plugins declare, and those published so far.
    pub(crate) fn event_catalog(&self) -> EventCatalog {
        let declared = self
            .table()
            .iter()
            .flat_map(|p| {
                p.file.manifest.events.iter().map(|e| DeclaredTopic {
                    topic: e.topic.clone(),
                    plugin: p.id().to_string(),
                    description: e.description.clone(),
                    schema: e.schema.clone(),
                })
            })
            .collect();
        let seen = self.events.seen();
        EventCatalog {
            declared,
            seen: seen.list(),
            unrecorded: seen.unrecorded(),
        }
    }

    /// Warns of each routine of the policy whose target is not there to call once a load is
    /// done: no plugin with its id, or one that declares no such action. Its runs will be
    /// recorded (and audited) as failed; the warning says so before the first event.
    pub(crate) fn warn_of_routines_without_target(&self) {
        let table = self.table();
        for routine in self.options.policy.routines() {
            let target = table.iter().find(|p| p.id() == &routine.plugin);
            let missing = match target {
                None => format!("no plugin {} is loaded", routine.plugin),
                Some(p) if p.file.manifest.action_index(&routine.action).is_none() => format!(
                    "plugin {} declares no action {:?} (it has {:?})",
                    routine.plugin,
                    routine.action,
                    p.file
                        .manifest
                        .actions
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                ),
                Some(_) => continue,
            };
            tracing::warn!(
                routine = %routine.name,
                "routine {:?} ({} -> {}.{}): {missing}; its runs will fail until it is there \
                 (fix [[routines]] in the policy, or load the plugin)",
                routine.name,
                routine.topic,
                routine.plugin,
                routine.action
            );
        }
    }

    /// Calls the routine's target once, and again on a retryable answer as `routine` (or the
    /// target's dispatch retries) says: attempts, outcome, detail.
    fn call_target(&self, routine: &Routine, job: &RoutineJob) -> (u32, RoutineOutcome, String) {
        let plugin = routine.plugin.as_str();
        let Some(retry) = self
            .find(plugin)
            .filter(|p| p.running.is_some())
            .map(|p| routine.retry.unwrap_or(p.policy.retry))
        else {
            let why = format!("{plugin} is not running");
            return (0, RoutineOutcome::NotRunning, why);
        };
        let mut out = Vec::new();
        let (attempts, called) =
            match self.call_retried(plugin, &routine.action, &job.payload, &retry, &mut out) {
                Ok(done) => done,
                Err(e) => return (1, RoutineOutcome::Failed(e.code), e.message),
            };
        match called {
            Called::Answered => (attempts, RoutineOutcome::Ok, String::new()),
            Called::Domain | Called::Retryable => (attempts, RoutineOutcome::Error, message(&out)),
            Called::Pending => {
                let code = crate::error::CallErrorCode::PendingApproval;
                let (id, detail) = super::called::pending_parts(&out);
                let detail = format!("{} (approval {})", message(detail), id.0);
                (attempts, RoutineOutcome::Failed(code), detail)
            }
            Called::Deferred => {
                let code = crate::error::CallErrorCode::Pending;
                let detail = super::called::deferred_message(&out);
                (attempts, RoutineOutcome::Failed(code), detail)
            }
            Called::Failed(code) => (attempts, RoutineOutcome::Failed(code), message(&out)),
        }
    }
}

impl RunRoutine for HostShared {
    fn run_routine(&self, routine: &Routine, job: &RoutineJob) {
        // The target's `ctx.caller()`, its permission rules and the audit record see the
        // publisher.
        let _caller = crate::frame::caller::push(job.from.clone());
        let (attempts, outcome, detail) = self.call_target(routine, job);
        let plugin = routine.plugin.as_str();
        let generation = self
            .find(plugin)
            .map_or(0, |p| p.generation.load(Ordering::SeqCst));
        let publisher = match &job.from {
            CallerInfo::Plugin { id, .. } => format!("plugin {id}"),
            CallerInfo::Host { .. } => publisher_name(&job.from).to_owned(),
        };
        let ended = match &outcome {
            RoutineOutcome::Ok => "answered".to_owned(),
            RoutineOutcome::Error => format!("the action's error: {detail}"),
            RoutineOutcome::NotRunning => detail.clone(),
            RoutineOutcome::Failed(code) => format!("{code}: {detail}"),
        };
        let said = format!(
            "{} published by {publisher} called {plugin}.{}: {ended} ({attempts} attempt{})",
            job.topic,
            routine.action,
            if attempts == 1 { "" } else { "s" }
        );
        if outcome != RoutineOutcome::Ok {
            tracing::warn!(routine = %routine.name, "{said}");
        }
        let capability = format!("routine:{}", routine.name);
        (self.audit).record(
            plugin,
            generation,
            &capability,
            AuditOutcome::Routine,
            &said,
        );
        self.events.routines().record(RoutineRun {
            routine: routine.name.clone(),
            topic: job.topic.to_string(),
            publisher: job.from.clone(),
            plugin: plugin.to_owned(),
            action: routine.action.clone(),
            attempts,
            outcome,
            detail,
        });
    }
}

//! Plugins together: the `started` and `stopping` phases (each within a deadline, contained
//! like `create`), the dependency order of the plugin table, shutdown in reverse of it, and the
//! rules dependencies put on disable, enable and reload.

use std::sync::Arc;
use std::time::Duration;

use airlock_abi::abi::InvocationKind;
use airlock_abi::manifest::PluginId;

use crate::error::{CallErrorCode, Error, Refusal, RefusalReason};
use crate::library::file::LibraryFile;
use crate::pipeline::graph::{self, Node, Standing};
use crate::pipeline::LoadReport;
use crate::runtime::outcome::{PluginState, TeardownRecord};

use super::lifecycle::run_with_deadline;
use super::plugin::{Invoked, LoadedPlugin};
use super::shared::HostShared;

/// Whether a plugin counts as running for its dependents: it has an instance (a quarantined
/// one still has, and `enable` lifts the quarantine without re-creating it).
fn is_up(plugin: &LoadedPlugin) -> bool {
    matches!(
        plugin.state.get(),
        PluginState::Running | PluginState::Quarantined
    ) && plugin.running.is_some()
}

/// A loaded plugin as the dependency graph sees it.
pub(crate) fn node_of(plugin: &LoadedPlugin) -> Node {
    let mut node = Node::of(&plugin.file);
    if !is_up(plugin) {
        node.idle = Some(plugin.state.get().to_string());
    }
    node
}

/// `plugins` in dependency order: each after the plugins it depends on, otherwise as given.
pub(crate) fn in_dependency_order(plugins: &[Arc<LoadedPlugin>]) -> Vec<Arc<LoadedPlugin>> {
    let items: Vec<_> = plugins
        .iter()
        .map(|p| Some((p.id(), p.file.manifest.dependencies.as_slice())))
        .collect();
    graph::order(&items)
        .into_iter()
        .map(|i| Arc::clone(&plugins[i]))
        .collect()
}

impl HostShared {
    /// The loaded plugins `keep` selects, as graph nodes.
    pub(crate) fn dependency_nodes(&self, keep: impl Fn(&LoadedPlugin) -> bool) -> Vec<Node> {
        self.table()
            .iter()
            .filter(|p| keep(p))
            .map(|p| node_of(p))
            .collect()
    }

    /// Runs the `started` or `stopping` phase on the running instance of `plugin` through the
    /// one invoke path, waiting for it at most `deadline`. What went wrong (an error, a panic —
    /// counted as a fault by the invoke path — or an overrun of `deadline`, after which the
    /// host goes on; like any call, it is told it is cancelled at its call timeout and counted
    /// as a fault by the watchdog past its grace), or `None`. A plugin that does
    /// not know the phase (built before it) answers `unsupported`: nothing to do.
    pub(crate) fn run_phase(
        &self,
        plugin: &Arc<LoadedPlugin>,
        kind: InvocationKind,
        deadline: Duration,
    ) -> Option<String> {
        let what = if kind == InvocationKind::STARTED {
            "started"
        } else {
            "stopping"
        };
        if !plugin.state.is(PluginState::Running) {
            return None;
        }
        // The thread holds the runtime (a `Weak` until it starts) only while its call runs: a
        // phase that never returns keeps it alive, as any call a program leaves running does.
        let me = self.me.clone();
        let target = Arc::clone(plugin);
        let answered = run_with_deadline(deadline, move || match me.upgrade() {
            Some(me) => me.invoke(&target, kind, 0, what, &[]).map(drop),
            None => Ok(()),
        });
        let problem = match answered {
            Some(Ok(()) | Err(Invoked::Failed(CallErrorCode::NotFound, _))) => return None,
            Some(Err(Invoked::Failed(CallErrorCode::Panicked, message))) => {
                format!("{what} panicked: {message}")
            }
            Some(Err(Invoked::Failed(code, message))) => {
                format!("{what} failed ({code}): {message}")
            }
            Some(Err(Invoked::Domain(message))) => format!("{what} failed: {message}"),
            // Not counted here: the phase is a call, and the watchdog counts a call still
            // running past its timeout and grace as a fault, once.
            None => format!(
                "{what} did not return within {} ms; the host went on without it",
                deadline.as_millis()
            ),
        };
        tracing::warn!(plugin = %plugin.id(), "{problem}");
        Some(problem)
    }

    /// `started` on each of `plugins`, in the order given (dependency order), each within its
    /// init deadline; what went wrong, by position.
    pub(crate) fn started_all(&self, plugins: &[Arc<LoadedPlugin>]) -> Vec<Option<String>> {
        plugins
            .iter()
            .map(|p| self.run_phase(p, InvocationKind::STARTED, p.policy.init_deadline))
            .collect()
    }

    /// Shutdown: `stopping` on every running plugin, dependents first, before any is torn
    /// down; then the routines stop; then teardown in the same order (reverse dependency order), each within its
    /// deadline.
    pub(crate) fn shut_down(&self) -> Vec<TeardownRecord> {
        let mut plugins = in_dependency_order(&self.table());
        plugins.reverse();
        let stopping: Vec<Option<String>> = plugins
            .iter()
            .map(|p| self.run_phase(p, InvocationKind::STOPPING, p.policy.shutdown_deadline))
            .collect();
        // No routine runs into plugins being torn down: the run in progress ends first, the
        // queued ones are dropped and counted.
        self.events.routines().stop();
        plugins
            .iter()
            .zip(stopping)
            .filter_map(|(p, stopping)| {
                let mut record = self.teardown(p, PluginState::Stopped)?;
                record.stopping = stopping;
                Some(record)
            })
            .collect()
    }

    /// The running plugins that need `id` (not optionally), directly or through others,
    /// dependents first: what disabling `id` takes down with it.
    pub(crate) fn running_dependents(&self, id: &PluginId) -> Vec<Arc<LoadedPlugin>> {
        let table = self.table();
        let mut gone: Vec<&PluginId> = vec![id];
        let mut found: Vec<Arc<LoadedPlugin>> = Vec::new();
        loop {
            let more: Vec<&Arc<LoadedPlugin>> = table
                .iter()
                .filter(|p| is_up(p) && !gone.contains(&p.id()))
                .filter(|p| {
                    p.file
                        .manifest
                        .dependencies
                        .iter()
                        .any(|d| !d.optional && gone.contains(&&d.id))
                })
                .collect();
            if more.is_empty() {
                break;
            }
            for p in more {
                gone.push(p.id());
                found.push(Arc::clone(p));
            }
        }
        let mut ordered = in_dependency_order(&found);
        ordered.reverse();
        ordered
    }

    /// Disables the running plugins that need `plugin` (not optionally), dependents first,
    /// each audited as disabled because `why` (what happens to `plugin`): what disabling it or
    /// removing its library takes down with it.
    pub(crate) fn disable_dependents(
        &self,
        plugin: &LoadedPlugin,
        why: &str,
    ) -> Vec<TeardownRecord> {
        let mut records = Vec::new();
        for dependent in self.running_dependents(plugin.id()) {
            let generation = dependent
                .generation
                .load(std::sync::atomic::Ordering::SeqCst);
            if let Some(record) = self.teardown(&dependent, PluginState::Disabled) {
                self.audit.plugin_event(
                    dependent.id().as_str(),
                    generation,
                    crate::services::audit::AuditOutcome::Disabled,
                    format_args!(
                        "{} disabled: it needs {}, and {why}",
                        dependent.id(),
                        plugin.id()
                    ),
                );
                records.push(record);
            }
        }
        records
    }

    /// Before `plugin` is created at startup: every plugin it needs was created before it (a
    /// dependency refused at stage 4 or 5 refuses it too, saying why). `report` holds this
    /// load's outcomes so far.
    ///
    /// # Errors
    ///
    /// A refusal: `missing_dependency` (or `dependency_version` against a plugin loaded before).
    pub(crate) fn dependencies_created(
        &self,
        plugin: &LoadedPlugin,
        report: &LoadReport,
    ) -> Result<(), Refusal> {
        let node = Node::of(&plugin.file);
        let peers = self.dependency_nodes(|p| p.id() != plugin.id());
        let refused: Vec<(PluginId, RefusalReason)> = report
            .plugins
            .iter()
            .filter_map(|e| Some((PluginId::new(e.id.as_deref()?).ok()?, e.reason?)))
            .collect();
        let lookup = |id: &PluginId| match peers.iter().find(|n| &n.id == id) {
            Some(node) => match &node.idle {
                None => Standing::Present(node),
                Some(state) => Standing::Idle(node, state),
            },
            None => match refused.iter().rev().find(|(r, _)| r == id) {
                Some((_, reason)) => Standing::Refused(*reason),
                None => Standing::Absent,
            },
        };
        match graph::unmet(&node, &lookup) {
            Some((reason, detail)) => {
                Err(Refusal::new(&plugin.file.path, reason, detail).with_id(plugin.id()))
            }
            None => Ok(()),
        }
    }

    /// Before `plugin` is created again (enable): every plugin it needs (not optionally) is
    /// running.
    ///
    /// # Errors
    ///
    /// [`Error::DependencyNotRunning`] naming the first that is not.
    pub(crate) fn dependencies_running(&self, plugin: &LoadedPlugin) -> Result<(), Error> {
        for dep in plugin
            .file
            .manifest
            .dependencies
            .iter()
            .filter(|d| !d.optional)
        {
            let state = match self.find(dep.id.as_str()) {
                Some(found) if is_up(&found) => continue,
                Some(found) => found.state.get().to_string(),
                None => "not loaded".to_owned(),
            };
            return Err(Error::DependencyNotRunning {
                plugin: plugin.id().to_string(),
                dependency: dep.id.to_string(),
                range: dep.range.to_string(),
                state,
            });
        }
        Ok(())
    }

    /// Stage 3 over the set for one new build (a reload, or a plugin first loaded by the
    /// watcher): the plugins it needs are loaded and in range, the loaded plugins that need it
    /// accept its version, and it closes no cycle. The old generation keeps serving if not.
    ///
    /// # Errors
    ///
    /// A refusal: `missing_dependency`, `dependency_version` or `dependency_cycle`.
    pub(crate) fn check_replacement(&self, file: &LibraryFile) -> Result<(), Refusal> {
        let new = Node::of(file);
        let refuse =
            |reason, detail| Err(Refusal::new(&file.path, reason, detail).with_id(&new.id));
        let peers = self.dependency_nodes(|p| p.id() != &new.id);
        let lookup = |id: &PluginId| match peers.iter().find(|n| &n.id == id) {
            Some(node) => match &node.idle {
                None => Standing::Present(node),
                Some(state) => Standing::Idle(node, state),
            },
            None => Standing::Absent,
        };
        if let Some((reason, detail)) = graph::unmet(&new, &lookup) {
            return refuse(reason, detail);
        }
        let new_ref = &new;
        let broken: Vec<String> = peers
            .iter()
            .flat_map(|peer| {
                peer.dependencies
                    .iter()
                    .filter(move |d| d.id == new_ref.id && !d.accepts(&new_ref.version))
                    .map(move |d| {
                        let state = peer.idle.as_deref().unwrap_or("running");
                        let optional = if d.optional { ", optional" } else { "" };
                        format!(
                            "plugin {} ({state}) needs {} {} (depends_on{optional}), but the new \
                             build is {} ({})",
                            peer.id,
                            new_ref.id,
                            d.range,
                            new_ref.version,
                            file.path.display()
                        )
                    })
            })
            .collect();
        if !broken.is_empty() {
            return refuse(RefusalReason::DependencyVersion, broken.join("; "));
        }
        let mut all: Vec<Option<&Node>> = peers.iter().map(Some).collect();
        all.push(Some(&new));
        let last = all.len() - 1;
        if let Some((_, path)) = graph::cycles(&all).into_iter().find(|(i, _)| *i == last) {
            let path: Vec<&str> = path.iter().map(PluginId::as_str).collect();
            return refuse(
                RefusalReason::DependencyCycle,
                format!(
                    "plugin {} would close a cycle of dependencies: {}; remove one of them from \
                     its depends_on",
                    new.id,
                    path.join(" -> ")
                ),
            );
        }
        Ok(())
    }
}

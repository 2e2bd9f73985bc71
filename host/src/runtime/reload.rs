//! Hot reload: the same stages 1–5 as startup on a new build, then an atomic swap; a refusal
//! leaves the old generation serving.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use airlock_abi::abi::InvocationKind;
use airlock_abi::manifest::PluginId;

#[cfg(feature = "testing")]
use crate::error::Error;
use crate::error::Refusal;
use crate::library::discover::discover_one;
use crate::library::file::LibraryFile;
use crate::library::lock::Lock;
use crate::loader::{self};
use crate::services::audit::AuditOutcome;

use super::plugin::{Invoked, LoadedPlugin};
use super::shared::HostShared;
use crate::pipeline::{decide_checked, refuse_taken, same_path, PipelineOptions};
use crate::runtime::outcome::{PluginState, ReloadOutcome};

impl HostShared {
    /// Reloads the plugin built into `path` (or loads it, if no plugin has its id yet): stages
    /// 2–5 on a new shadow copy, then an atomic swap. Calls in flight finish on the old
    /// generation, which is then drained, torn down and revoked. If anything fails before the
    /// swap, the old generation keeps serving. Unchanged bytes are skipped unless `force`.
    pub(crate) fn reload_file(&self, path: &Path, force: bool) -> ReloadOutcome {
        let started = Instant::now();
        let _admin = self.admin();
        let table = self.table();
        // Stages 1 and 2 under the same rules as startup (permissions, symlinks, whole file).
        let trusted = self.options.policy.host().trusted();
        let read = discover_one(path, trusted).and_then(|c| {
            crate::pipeline::read_one(&self.options, &c, crate::pipeline::ReadFor::Reloading)
        });
        let file = match read {
            Ok(file) => file,
            Err(mut refusal) => {
                // Not readable as a plugin: whatever was loaded from this path keeps serving.
                let previous = table.iter().find(|p| same_path(&p.file.path, path));
                if let Some(p) = previous {
                    refusal.id = Some(p.id().clone());
                }
                let serving = previous.and_then(|p| serving(p));
                return self.reload_refused(previous.map(|p| p.id()), serving, refusal);
            }
        };
        let id = file.manifest.id.clone();
        let current = self.find(id.as_str());
        let serving = current.as_deref().and_then(serving);
        if let Some(old) = &current {
            if same_path(&old.file.path, path) && old.file.blake3 == file.blake3 && !force {
                return ReloadOutcome::Unchanged { id: id.to_string() };
            }
        }
        let plugin = match self.new_generation(path, file, current.as_deref()) {
            Ok(mut plugin) => {
                plugin.load_time = started.elapsed();
                Arc::new(plugin)
            }
            Err(refusal) => return self.reload_refused(Some(&id), serving, refusal),
        };
        let generation = plugin.generation.load(Ordering::SeqCst);
        self.swap_in(&plugin, current, path);
        self.started_all(&[Arc::clone(&plugin)]);
        self.warn_if_many_retained();
        let outcome = ReloadOutcome::Loaded {
            id: id.to_string(),
            generation,
            elapsed: started.elapsed(),
        };
        tracing::info!("{outcome}");
        self.audit
            .plugin_event(id.as_str(), generation, AuditOutcome::Loaded, &outcome);
        outcome
    }

    /// Stages 3–5 on a new build of the plugin `current` is the running generation of (if any):
    /// its id checked free, decided under the lock as it is now, prepared and started with the
    /// state the old generation hands over. Nothing is swapped yet.
    fn new_generation(
        &self,
        path: &Path,
        file: LibraryFile,
        current: Option<&LoadedPlugin>,
    ) -> Result<LoadedPlugin, Refusal> {
        // The ids other files provide (files still there: a renamed library is the same
        // plugin moving, not a second one) — the same duplicate rule as at startup.
        let taken = self.taken(|p| !same_path(&p.file.path, path) && p.file.path.exists());
        refuse_taken(&file, &taken)?;
        let checked = decide_checked(&self.options_now(), file)?;
        self.check_replacement(&checked.file)?;
        let plugin = self.prepare(checked, current)?;
        let handover = current.and_then(|old| self.handover(old));
        let config = plugin.settings.lock().config.clone();
        self.start_instance(&plugin, &config, handover)?;
        Ok(plugin)
    }

    /// The pipeline's options with the lock file as it is now: `airlock install` pins what it
    /// puts in a watched directory.
    fn options_now(&self) -> Cow<'_, PipelineOptions> {
        match self
            .options
            .lock
            .as_ref()
            .map(|l| Lock::from_file(l.path()))
        {
            Some(Ok(lock)) => Cow::Owned(PipelineOptions {
                lock: Some(lock),
                ..self.options.clone()
            }),
            _ => Cow::Borrowed(&self.options),
        }
    }

    /// The state the running generation `old` hands over to its successor (none if it has
    /// none, or its snapshot fails: the new generation then starts fresh).
    fn handover(&self, old: &LoadedPlugin) -> Option<Vec<u8>> {
        match self.invoke(old, InvocationKind::SNAPSHOT, 0, "snapshot", &[]) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => None,
            Err(Invoked::Domain(m) | Invoked::Failed(_, m)) => {
                tracing::warn!(plugin = %old.id(), "snapshot failed, the new generation starts fresh: {m}");
                None
            }
        }
    }

    /// Swaps `plugin` into the table (new calls reach it from now on), then drains and retires
    /// the generation it replaces, `current`, and a plugin of another id this file held before
    /// (a library replaced by another).
    fn swap_in(&self, plugin: &Arc<LoadedPlugin>, current: Option<Arc<LoadedPlugin>>, path: &Path) {
        let id = plugin.id();
        self.update_table(|table| match table.iter().position(|p| p.id() == id) {
            Some(at) => table[at] = plugin.clone(),
            None => table.push(plugin.clone()),
        });
        if let Some(old) = current {
            self.teardown(&old, PluginState::Stopped);
        }
        let displaced: Vec<_> = self
            .table()
            .iter()
            .filter(|p| p.id() != id && !p.file.is_builtin() && same_path(&p.file.path, path))
            .cloned()
            .collect();
        for old in displaced {
            self.teardown(&old, PluginState::Stopped);
            self.update_table(|table| table.retain(|p| !Arc::ptr_eq(p, &old)));
            tracing::info!(plugin = %old.id(), "{}: another plugin's library took its place; torn down", path.display());
        }
    }

    /// Warns when more libraries are retained in this process than the policy expects.
    fn warn_if_many_retained(&self) {
        let retained = loader::retained().0;
        if let Some(max) = self.options.policy.host().max_retained {
            if retained > max {
                tracing::warn!(
                    "{retained} libraries are retained in this process (over the {max} the policy expects); restart the host to release them"
                );
            }
        }
    }

    /// A new build refused, logged and (when the file names a plugin) recorded: the generation
    /// `serving` keeps serving.
    fn reload_refused(
        &self,
        plugin: Option<&PluginId>,
        serving: Option<u64>,
        refusal: Refusal,
    ) -> ReloadOutcome {
        let outcome = ReloadOutcome::Refused { refusal, serving };
        tracing::warn!("{outcome}");
        if let Some(id) = plugin {
            self.audit.plugin_event(
                id.as_str(),
                serving.unwrap_or(0),
                AuditOutcome::ReloadRefused,
                &outcome,
            );
        }
        outcome
    }

    /// The plugin loaded from `path`, now that the file is gone: torn down within its deadline
    /// (its library stays mapped, as every retired one does) and taken out of the table, so its
    /// id is free for another file. `None` if no plugin came from there.
    pub(crate) fn remove_file(&self, path: &Path) -> Option<ReloadOutcome> {
        let _admin = self.admin();
        let same = |loaded: &Path| {
            loaded == path
                || (loaded.file_name() == path.file_name()
                    && matches!(
                        (
                            loaded.parent().map(std::fs::canonicalize),
                            path.parent().map(std::fs::canonicalize)
                        ),
                        (Some(Ok(a)), Some(Ok(b))) if a == b
                    ))
        };
        // Still gone, now that no reload can run.
        if std::fs::symlink_metadata(path).is_ok() {
            return None;
        }
        let gone: Vec<_> = self
            .table()
            .iter()
            .filter(|p| !p.file.is_builtin() && same(&p.file.path))
            .cloned()
            .collect();
        let mut outcome = None;
        for plugin in gone {
            let generation = plugin.generation.load(Ordering::SeqCst);
            let dependents = self
                .disable_dependents(&plugin, "its library was removed")
                .into_iter()
                .map(|record| record.id)
                .collect();
            let teardown = self
                .teardown(&plugin, PluginState::Stopped)
                .map(|record| record.outcome);
            self.update_table(|table| table.retain(|p| !Arc::ptr_eq(p, &plugin)));
            let removed = ReloadOutcome::Removed {
                id: plugin.id().to_string(),
                teardown,
                dependents,
            };
            tracing::info!("{removed}");
            self.audit.plugin_event(
                plugin.id().as_str(),
                generation,
                AuditOutcome::Removed,
                &removed,
            );
            outcome = Some(removed);
        }
        outcome
    }

    /// Creates `id` again with the state its running instance hands over, as a reload does,
    /// without a new build: the test harness's reload of a built-in plugin.
    #[cfg(feature = "testing")]
    pub(crate) fn restart(&self, id: &str) -> Result<u64, Error> {
        let admin = self.admin();
        let loaded = admin.plugin(id)?;
        let handover = match self.invoke(&loaded, InvocationKind::SNAPSHOT, 0, "snapshot", &[]) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            _ => None,
        };
        self.teardown(&loaded, PluginState::Stopped);
        let config = loaded.settings.lock().config.clone();
        self.start_instance(&loaded, &config, handover)?;
        self.started_all(&[Arc::clone(&loaded)]);
        Ok(loaded.generation.load(Ordering::SeqCst))
    }
}

/// The generation of `plugin` that is serving, if one is.
fn serving(plugin: &LoadedPlugin) -> Option<u64> {
    plugin
        .running
        .is_some()
        .then(|| plugin.generation.load(Ordering::SeqCst))
}

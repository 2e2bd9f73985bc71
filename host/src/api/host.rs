//! The host program's side of [`Host`]: load, list, resolve actions, hooks, health, reload
//! and watch, audit, shutdown.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use airlock_abi::{Health, HookReply};

use super::hooks::{HookDispatch, HookMode};
use crate::error::{CallError, CallErrorCode, Error, Refusal};
use crate::library::discover::discover;
use crate::library::file::LibraryFile;
use crate::pipeline::report::{LoadReport, PluginReport};
use crate::runtime::watch::Watcher;
use crate::services::audit::AuditLog;
use crate::sync::hazard::Retaining;

use super::builder::HostBuilder;
use super::handle::ActionHandle;
use super::Host;
use crate::pipeline::{
    decide_all, graph, ok_report, parallel_map, read_all, refuse_taken, Checked, ReadFor,
};
use crate::runtime::called::{fail, not_loaded};
use crate::runtime::outcome::{PluginInfo, ReloadOutcome, TeardownRecord};

impl Host {
    /// Starts building a host.
    pub fn builder() -> HostBuilder {
        HostBuilder::new()
    }

    /// Runs the whole pipeline over the plugin directories and loads every library that passes.
    /// One bad file never stops the others: each is reported, with its reason code. Plugins are
    /// created in dependency order (`depends_on`; otherwise discovery order), and once all are,
    /// each is told `started`, in the same order.
    ///
    /// # Errors
    ///
    /// [`Error::PluginDir`] if a directory cannot be read.
    pub fn load(&self) -> Result<LoadReport, Error> {
        let shared = &*self.shared;
        let _admin = shared.admin();
        let mut report = LoadReport::default();
        let taken = shared.taken(|_| true);
        let options = &shared.options;
        // Built-in plugins first (taken by the first `load`), then the libraries.
        let mut files: Vec<Result<LibraryFile, Refusal>> =
            std::mem::take(&mut *shared.builtins.lock());
        files.extend(read_all(
            options,
            discover(&options.dirs, options.policy.host().trusted())?,
            ReadFor::Loading,
        ));
        let mut checked = decide_all(options, files, &taken);
        // The set's dependencies, with the plugins already loaded; then dependency order.
        let loaded = shared.dependency_nodes(|_| true);
        graph::refuse_unmet(&mut checked, &loaded);
        let checked = graph::in_dependency_order(checked);
        let mut graphs = graph::describe_all(&checked, &loaded).into_iter();
        // Stage 4 (shadow copy, dlopen, layout check) spread over the cores; stage 5 (create)
        // in dependency order (otherwise discovery order), so a plugin's `create` sees the
        // plugins it depends on, and those loaded before it.
        let prepared = parallel_map(checked, |checked| match checked {
            Err(refusal) => Err((refusal, None)),
            Ok(checked) => {
                let version = checked.file.manifest.version.to_string();
                shared
                    .prepare_timed(checked)
                    .map_err(|refusal| (refusal, Some(version)))
            }
        });
        let mut created = Vec::new();
        for prepared in prepared {
            let dependencies = graphs.next().unwrap_or_default();
            let entry = match prepared {
                Err((refusal, version)) => PluginReport::refused(&refusal, version),
                Ok(prepared) => {
                    let version = prepared.0.file.manifest.version.to_string();
                    // A dependency refused at stage 4 or 5 refuses its dependents too.
                    let started = shared
                        .dependencies_created(&prepared.0, &report)
                        .and_then(|()| shared.start_prepared(prepared));
                    match started {
                        Ok(plugin) => {
                            let ms = plugin.load_time.as_secs_f64() * 1e3;
                            let detail = if plugin.file.is_builtin() {
                                format!(
                                    "built into the host (no file: discovery, reading and hashing \
                                     do not apply); created in {ms:.2} ms"
                                )
                            } else if let crate::isolation::Creator::Worker(spec) = &plugin.creator
                            {
                                format!(
                                    "loaded in {ms:.2} ms, in a worker process: {}",
                                    spec.sandboxed.lock()
                                )
                            } else {
                                format!("loaded in {ms:.2} ms")
                            };
                            let mut entry = ok_report(&plugin.file, detail);
                            entry.warnings = plugin.grant_warnings(&shared.options.policy);
                            let plugin = Arc::new(plugin);
                            created.push((report.plugins.len(), Arc::clone(&plugin)));
                            shared.update_table(|table| table.push(plugin));
                            entry
                        }
                        Err(refusal) => PluginReport::refused(&refusal, Some(version)),
                    }
                }
            };
            match entry.reason {
                Some(reason) => {
                    tracing::warn!(file = %entry.file.display(), %reason, "{}", entry.detail)
                }
                None => {
                    tracing::info!(file = %entry.file.display(), id = entry.id.as_deref(), "{}", entry.detail)
                }
            }
            // What satisfied its dependencies, for a plugin that loaded (a refusal says why).
            let dependencies = match entry.reason {
                None => dependencies,
                Some(_) => Vec::new(),
            };
            report.plugins.push(PluginReport {
                dependencies,
                ..entry
            });
        }
        // Every plugin of the load is created: `started`, in dependency order.
        let plugins: Vec<_> = created.iter().map(|(_, p)| Arc::clone(p)).collect();
        for ((at, _), problem) in created.iter().zip(shared.started_all(&plugins)) {
            if let (Some(problem), Some(entry)) = (problem, report.plugins.get_mut(*at)) {
                entry.detail.push_str(&format!("; {problem}"));
            }
        }
        shared.warn_of_routines_without_target();
        Ok(report)
    }

    /// Loads (stages 4 and 5) a library that [`check`](crate::pipeline::check) already passed, from the
    /// bytes it checked: what is on disk now does not matter.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] of stage 4 or 5, `duplicate_id` if a plugin with its id is loaded,
    /// `claim_conflict` if a loaded plugin holds a kind of request it claims, or
    /// `missing_dependency`, `dependency_version` or `dependency_cycle` against the loaded
    /// plugins.
    pub fn load_checked(&self, checked: Checked) -> Result<(), Refusal> {
        let shared = &*self.shared;
        let _admin = shared.admin();
        refuse_taken(&checked.file, &shared.taken(|_| true))?;
        shared.check_replacement(&checked.file)?;
        let plugin = Arc::new(shared.load_one(checked)?);
        shared.update_table(|table| table.push(Arc::clone(&plugin)));
        shared.started_all(&[plugin]);
        Ok(())
    }

    /// The loaded plugins, in load order.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let lock = self.lock_now();
        self.shared
            .table()
            .iter()
            .map(|p| self.info(p, lock.as_ref()))
            .collect()
    }

    /// One loaded plugin by id.
    pub fn plugin(&self, id: &str) -> Option<PluginInfo> {
        let lock = self.lock_now();
        self.shared.find(id).map(|p| self.info(&p, lock.as_ref()))
    }

    /// Resolves `action` of `plugin` once, for a hot path that should pay no lookup by name
    /// per call.
    ///
    /// # Errors
    ///
    /// `not_found` if there is no such plugin or action.
    pub fn action(&self, plugin: &str, action: &str) -> Result<ActionHandle<'_>, CallError> {
        let resolved = self.shared.resolve(plugin, action)?;
        Ok(ActionHandle {
            shared: &self.shared,
            plugin: plugin.to_owned(),
            action: action.to_owned(),
            resolved: Retaining::new(resolved),
        })
    }

    /// Asks a plugin for its health.
    ///
    /// # Errors
    ///
    /// A [`CallError`] if the plugin is not running or fails to answer.
    pub fn health(&self, plugin: &str) -> Result<Health, CallError> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| not_loaded(plugin, "health"))?;
        self.shared.poll_health(&loaded)
    }
}

impl Host {
    /// Defines (or redefines) a hook point and its dispatch mode.
    pub fn define_hook(&self, hook: &str, mode: HookMode) {
        self.hooks.lock().insert(hook.to_owned(), mode);
    }

    /// Dispatches hooks: `host.hooks().chain::<String>("input.transform", line)`.
    pub fn hooks(&self) -> HookDispatch<'_> {
        HookDispatch::new(self)
    }

    /// Reloads a plugin from its library file now, even if the bytes did not change: a new
    /// shadow copy, a new generation with fresh statics. The old generation keeps serving if
    /// the new one is refused.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPlugin`]; [`Error::Builtin`] for a plugin compiled into the program.
    pub fn reload(&self, plugin: &str) -> Result<ReloadOutcome, Error> {
        let path = {
            let loaded = self.shared.admin().plugin(plugin)?;
            if loaded.file.is_builtin() {
                return Err(Error::Builtin {
                    plugin: plugin.to_owned(),
                });
            }
            loaded.file.path.clone()
        };
        Ok(self.shared.reload_file(&path, true))
    }

    /// Reloads (or newly loads) the plugin in `path` if its bytes changed; see [`Host::reload`].
    pub fn reload_file(&self, path: &Path) -> ReloadOutcome {
        self.shared.reload_file(path, false)
    }

    /// Watches the plugin directories and follows them: a library that changes is reloaded (a
    /// new one loaded) after `debounce` of quiet, once the file is whole, and only if its bytes
    /// changed; a signature written beside a library counts as a change of it; a library that
    /// is removed has its plugin torn down ([`ReloadOutcome::Removed`]). `on_reload` is told
    /// every outcome. Watching stops when the returned [`Watcher`] is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Watch`] if the directories cannot be watched.
    pub fn watch(
        &self,
        debounce: Duration,
        on_reload: impl Fn(&ReloadOutcome) + Send + 'static,
    ) -> Result<Watcher, Error> {
        Watcher::start(
            Arc::downgrade(&self.shared) as Weak<dyn crate::runtime::watch::Reload>,
            &self.shared.options.dirs,
            debounce,
            on_reload,
        )
    }

    /// Follows the policy's channels (`[[sources]]`): each source is polled at its interval;
    /// when it points to a new digest, the build is fetched, verified by digest and checked as
    /// a file would be, installed where the plugin's library is (a new plugin: into the first
    /// plugin directory), pinned in the policy's lock with its source and digest, and reloaded.
    /// A build refused at any step never replaces the serving one. `on_outcome` is told what
    /// each look found; the audit log records every build installed or refused. Following stops
    /// when the returned [`crate::fleet::Follower`] is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Watch`] if the follower's thread cannot be started, or the policy has sources
    /// but no `[host] lock` to pin what they bring.
    #[cfg(feature = "oci")]
    pub fn follow(
        &self,
        on_outcome: impl Fn(&crate::fleet::SourceOutcome) + Send + 'static,
    ) -> Result<crate::fleet::Follower, Error> {
        let policy = &self.shared.options.policy;
        if !policy.sources().is_empty() && policy.host().lock.is_none() {
            return Err(Error::Watch(
                "following [[sources]] needs [host] lock: each build pulled is pinned there"
                    .to_owned(),
            ));
        }
        crate::fleet::Follower::start(
            Arc::downgrade(&self.shared),
            self.shared.options.policy.sources().to_vec(),
            on_outcome,
        )
    }

    /// Runs one plugin's handler of `hook` directly, whatever the hook's mode (for conformance
    /// checks like `airlock validate`), through the plugin's permissions as a dispatch would.
    ///
    /// # Errors
    ///
    /// A [`CallError`]: `not_found` if the plugin does not declare the hook, or the failure.
    pub fn probe_hook(
        &self,
        plugin: &str,
        hook: &str,
        input: &serde_json::Value,
    ) -> Result<HookReply<serde_json::Value>, CallError> {
        let loaded = self
            .shared
            .find(plugin)
            .ok_or_else(|| not_loaded(plugin, hook))?;
        let index = loaded
            .file
            .manifest
            .hooks
            .iter()
            .position(|h| h.name == hook)
            .ok_or_else(|| {
                fail(
                    plugin,
                    hook,
                    CallErrorCode::NotFound,
                    format!("plugin {plugin:?} does not declare hook {hook:?}"),
                )
            })?;
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        HookDispatch::new(self)
            .run_one(&loaded, index, hook, input)
            .map_err(|f| fail(plugin, hook, f.code, f.reason))
    }

    /// A raw `extern "C"` function of a loaded plugin's library (its manifest-block export,
    /// which only returns a static slice), for benchmarks that compare Airlock's call path with
    /// a bare call into the library. Not for anything else (feature `test-support`).
    #[cfg(feature = "test-support")]
    pub fn raw_entry(
        &self,
        plugin: &str,
    ) -> Option<extern "C" fn() -> abi_stable::std_types::RSlice<'static, u8>> {
        self.shared.find(plugin).and_then(|p| p.creator.raw_entry())
    }

    /// Events dropped because the delivery queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events.dropped()
    }

    /// Registers an address the program serves on (the `--listen` server of `airlock run`, an
    /// embedder's own HTTP front door): from now on a plugin's outbound HTTP never connects to
    /// it, even where the policy's `http.allow_private` allows the address — a plugin granted
    /// loopback would otherwise call the routes of other plugins, or the program's own, through
    /// it. An unspecified address (`0.0.0.0`, `::`) stands for every address of this machine
    /// (loopback included) on its port. The hop is refused with an audit record.
    pub fn serving_on(&self, addr: std::net::SocketAddr) {
        let mut serving = self.shared.serving.write();
        if !serving.contains(&addr) {
            serving.push(addr);
        }
    }

    /// The audit log (its last records: `audit().tail(n)`).
    pub fn audit(&self) -> &AuditLog {
        &self.shared.audit
    }

    /// Tells every running plugin it is `stopping` (dependents first, while every plugin still
    /// runs), then tears every running plugin down in reverse dependency order (otherwise
    /// reverse load order), each within its deadline; a plugin that overruns is revoked and
    /// abandoned, and shutdown continues. Every context is revoked when this returns.
    pub fn shutdown(&self) -> Vec<TeardownRecord> {
        let _admin = self.shared.admin();
        self.shared.shut_down()
    }
}

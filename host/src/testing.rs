//! The authors' test harness: a plugin type run in-process on the real runtime, through the
//! same membrane, policy, audit and invoke path as a loaded library (feature `testing`). There
//! is no second membrane to drift from the first: a plugin that passes here meets the same
//! rules when it is loaded.
//!
//! What a test needs to be deterministic, the harness adds: timers run only when the test
//! fires them, a publication is delivered before `publish` returns, and calls to plugins that
//! are not loaded get the answers the test gives. What the plugin logged and published is
//! recorded.
//!
//! Longer than 400 lines: one small API (the builder and the plugin under test) with its
//! documentation; split, the reference would be in two places.
//!
//! ```no_run
//! # use airlock_abi::{Actions, ActionError, Context, InitError, Plugin, Builtin};
//! # struct Hello;
//! # impl Plugin for Hello { fn create(_: Context) -> Result<Self, InitError> { Ok(Self) } }
//! # impl Builtin for Hello { const MANIFEST: &'static str = r#"{"id":"hello","version":"1.0.0"}"#; }
//! use airlock::testing::TestHost;
//!
//! let hello = TestHost::new()
//!     .config(serde_json::json!({"greeting": "Hi"}))
//!     .create::<Hello>()
//!     .expect("created");
//! let answer = hello.call::<_, String>("greet", &serde_json::json!({"name": "Ada"}));
//! hello.teardown().expect("a clean teardown");
//! ```

mod schemas;

pub use schemas::{schemas, SchemaCheck};

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_abi::manifest::{Capability, Manifest};
use airlock_abi::{Builtin, Health, HookReply, Level};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::api::Host;
use crate::error::{CallError, CallErrorCode, Error, Refusal, RefusalReason};
use crate::policy::{Policy, SecretSource};
use crate::runtime::outcome::{ConfigApplied, Reply, TeardownOutcome};
use crate::services::audit::AuditOutcome;
use crate::services::registry::{Caller, Registry, ServiceError};
use crate::services::Observed;

/// Sets up one plugin on a real host for a test.
#[derive(Debug, Default)]
pub struct TestHost {
    grants: Option<Vec<String>>,
    config: Option<Value>,
    secrets: Vec<(String, String)>,
    answers: Vec<(String, String, Result<Value, String>)>,
    /// The embedding program's services, as the test fakes them.
    registry: Registry,
}

/// What a plugin did wrong at teardown, found by [`Tested::teardown`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaks {
    /// Capabilities it used that its manifest does not declare.
    pub undeclared: Vec<String>,
    /// How its teardown ended, if not cleanly (it panicked, failed or overran).
    pub teardown: Option<String>,
}

impl std::fmt::Display for Leaks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "used undeclared capabilities {:?}", self.undeclared)?;
        if let Some(how) = &self.teardown {
            write!(f, "; teardown did not end cleanly: {how}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Leaks {}

impl TestHost {
    /// A harness granting the plugin every capability it declares, with an empty config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants exactly these capabilities (`"kv"`, `"events.publish:demo.*"`, …).
    pub fn grants(mut self, grants: &[&str]) -> Self {
        self.grants = Some(grants.iter().map(|g| (*g).to_owned()).collect());
        self
    }

    /// The plugin's config.
    pub fn config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// A secret the plugin may read (with `secrets:<name>`).
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.to_owned(), value.to_owned()));
        self
    }

    /// What a call to `plugin`'s `action` answers (`Ok(data)` or the domain error); a call to
    /// a plugin with no answer fails `not_found`, as it would on a host without it.
    pub fn answer(mut self, plugin: &str, action: &str, result: Result<Value, String>) -> Self {
        self.answers
            .push((plugin.to_owned(), action.to_owned(), result));
        self
    }

    /// Offers the plugin operation `O` of a service of the embedding program, served by
    /// `handler` (a fake of the program's implementation); as
    /// [`HostBuilder::operation`](crate::HostBuilder::operation).
    pub fn operation<O: airlock_abi::contract::Operation>(
        mut self,
        handler: impl Fn(&Caller, O::Input) -> Result<O::Output, ServiceError> + Send + Sync + 'static,
    ) -> Self {
        self.registry.add::<O>(handler);
        self
    }

    /// Creates the plugin on a host of its own, through the real pipeline after the file:
    /// manifest checks, policy, `validate_config`, `create`.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] the host reports: `bad_manifest`, `not_granted`, `config_invalid`,
    /// `init_failed`, `init_panicked`, …
    pub fn create<P: Builtin>(self) -> Result<Tested, Refusal> {
        let here = std::path::Path::new(crate::library::file::BUILTIN_PATH);
        let refuse = |reason, detail: String| Refusal::new(here, reason, detail);
        let manifest = Manifest::from_json(P::MANIFEST)
            .map_err(|e| refuse(RefusalReason::BadManifest, e.to_string()))?;
        let mut policy = Policy::default();
        let mut entry = policy.defaults().clone();
        entry.grants = match &self.grants {
            None => manifest
                .capabilities
                .iter()
                .map(|c| c.capability.clone())
                .collect(),
            Some(grants) => grants
                .iter()
                .map(|g| Capability::parse(g))
                .collect::<Result<_, _>>()
                .map_err(|e| refuse(RefusalReason::NotGranted, e))?,
        };
        if let Some(config) = self.config {
            entry.config = config;
        }
        policy.set(manifest.id.clone(), entry);
        for (name, value) in self.secrets {
            policy.set_secret(&name, SecretSource::Value(value));
        }
        let data = tempfile::tempdir().map_err(|e| {
            refuse(
                RefusalReason::LoadFailed,
                format!("no temporary directory: {e}"),
            )
        })?;
        let host = Host::builder()
            .builtin::<P>()
            .policy(policy)
            .data_dir(data.path())
            .shadow_dir(data.path())
            .observed(self.answers)
            .services(self.registry)
            .build()
            .map_err(|e| refuse(RefusalReason::LoadFailed, e.to_string()))?;
        let report = host
            .load()
            .map_err(|e| refuse(RefusalReason::LoadFailed, e.to_string()))?;
        if let Some(refused) = report.plugins.iter().find(|p| p.reason.is_some()) {
            let reason = refused.reason.unwrap_or(RefusalReason::LoadFailed);
            return Err(Refusal::new(&refused.file, reason, refused.detail.clone()));
        }
        Ok(Tested {
            host,
            id: manifest.id.to_string(),
            manifest,
            _data: data,
        })
    }
}

/// A plugin running on a real host for a test; dropped, it is torn down.
#[derive(Debug)]
pub struct Tested {
    host: Host,
    id: String,
    manifest: Manifest,
    _data: tempfile::TempDir,
}

impl Tested {
    /// The host it runs on, for anything the harness does not wrap.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Calls an action: its [`Reply`] with the answer decoded as an `O`, or the call's failure.
    ///
    /// # Errors
    ///
    /// The [`CallError`] the host reports (`bad_input`, `panicked`, …), or `bad_input` if the
    /// answer is not an `O`.
    pub fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        action: &str,
        input: &I,
    ) -> Result<Reply<O>, CallError> {
        let input = serde_json::to_vec(input).map_err(|e| self.error(action, &e))?;
        match self.host.call(&self.id, action).bytes(&input)? {
            Reply::Ok(bytes) => airlock_abi::wire::parse(&bytes)
                .map(Reply::Ok)
                .map_err(|e| self.error(action, &e)),
            Reply::Error(message) => Ok(Reply::Error(message)),
            Reply::PendingApproval(id) => Ok(Reply::PendingApproval(id)),
            Reply::Pending { id, description } => Ok(Reply::Pending { id, description }),
        }
    }

    /// Calls an action with bytes, as `.bytes(..)` on a host's call does.
    ///
    /// # Errors
    ///
    /// As [`Tested::call`].
    pub fn call_bytes(&self, action: &str, input: &[u8]) -> Result<Reply<Vec<u8>>, CallError> {
        self.host.call(&self.id, action).bytes(input)
    }

    /// Runs the plugin's handler of `hook` with `input`.
    ///
    /// # Errors
    ///
    /// As [`Host::probe_hook`].
    pub fn hook<I: Serialize, O: DeserializeOwned>(
        &self,
        hook: &str,
        input: &I,
    ) -> Result<HookReply<O>, CallError> {
        let input = serde_json::to_value(input).map_err(|e| self.error(hook, &e))?;
        let reply = self.host.probe_hook(&self.id, hook, &input)?;
        let decode = |v: Value| serde_json::from_value(v).map_err(|e| self.error(hook, &e));
        Ok(match reply {
            HookReply::Continue(v) => HookReply::Continue(decode(v)?),
            HookReply::Swallow(reply) => HookReply::Swallow(reply),
            HookReply::Block(reason) => HookReply::Block(reason),
        })
    }

    /// Publishes an event from the test; returns once every subscriber has handled it, with
    /// how many subscriptions it went to.
    pub fn publish<T: Serialize>(&self, topic: &str, payload: &T) -> usize {
        let payload = serde_json::to_value(payload).unwrap_or(Value::Null);
        let queued = self.host.publish(topic, &payload);
        self.host.shared.events.settle();
        queued
    }

    /// Runs the timer job `name` once, now; false if the plugin has no such job.
    pub fn fire_timer(&self, name: &str) -> bool {
        let token = self.token();
        self.host.shared.timers.run_now(token, name).is_ok()
    }

    /// Runs every timer job (interval and cron) of the plugin once; how many ran.
    pub fn run_timers(&self) -> usize {
        let names: Vec<String> = self
            .timers()
            .into_keys()
            .chain(self.cron_jobs().into_keys())
            .collect();
        names.iter().filter(|name| self.fire_timer(name)).count()
    }

    /// Asks the plugin for its health.
    ///
    /// # Errors
    ///
    /// As [`Host::health`].
    pub fn health(&self) -> Result<Health, CallError> {
        self.host.health(&self.id)
    }

    /// Changes the config, as an operator does: validated, then applied live or by creating
    /// the plugin again.
    ///
    /// # Errors
    ///
    /// As [`Host::set_config`].
    pub fn set_config(&self, config: Value) -> Result<ConfigApplied, Error> {
        self.host.set_config(&self.id, config)
    }

    /// Creates the plugin again with the state its instance hands over, as a hot reload does.
    ///
    /// # Errors
    ///
    /// As [`Host::enable`]: the new instance was refused.
    pub fn reload(&self) -> Result<u64, Error> {
        self.host.shared.restart(&self.id)
    }

    /// What the plugin logged, in order, at every level.
    pub fn logs(&self) -> Vec<(Level, String)> {
        self.observed(|what| match what {
            Observed::Log { level, message } => Some((level_of(*level), message.clone())),
            Observed::Published { .. } => None,
        })
    }

    /// What the plugin published, in order.
    pub fn published(&self) -> Vec<(String, Value)> {
        self.observed(|what| match what {
            Observed::Published { topic, payload } => Some((topic.clone(), payload.clone())),
            Observed::Log { .. } => None,
        })
    }

    /// The plugin's key/value namespace.
    pub fn kv(&self) -> BTreeMap<String, Value> {
        let Some(kv) = self.host.shared.kv.as_ref() else {
            return BTreeMap::new();
        };
        let id = &self.manifest.id;
        kv.keys(id, "")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|key| {
                let bytes = kv.get(id, &key).ok()??;
                Some((key, serde_json::from_slice(&bytes).ok()?))
            })
            .collect()
    }

    /// The topic patterns the plugin is subscribed to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.host.shared.events.patterns(self.token())
    }

    /// The plugin's timer jobs and their intervals.
    pub fn timers(&self) -> BTreeMap<String, Duration> {
        self.host
            .shared
            .timers
            .jobs(self.token())
            .into_iter()
            .collect()
    }

    /// The plugin's cron jobs and their expressions.
    pub fn cron_jobs(&self) -> BTreeMap<String, String> {
        self.host
            .shared
            .timers
            .cron_jobs(self.token())
            .into_iter()
            .collect()
    }

    /// The capabilities the plugin was denied, in order (one audit record each).
    pub fn denials(&self) -> Vec<String> {
        self.host
            .audit()
            .tail(usize::MAX)
            .into_iter()
            .filter(|r| r.plugin == self.id && r.outcome == AuditOutcome::Denied)
            .map(|r| r.capability)
            .collect()
    }

    /// What the plugin said of its config when it accepted it.
    pub fn config_warnings(&self) -> Vec<String> {
        self.host.shared.warnings(&self.id)
    }

    /// Tears the plugin down, as shutdown does, and checks it did nothing wrong: no use of a
    /// capability its manifest does not declare, and a clean teardown. (It cannot leave timers
    /// or subscriptions behind: the host owns them and removes them first.)
    ///
    /// # Errors
    ///
    /// [`Leaks`] listing what was found.
    pub fn teardown(self) -> Result<(), Leaks> {
        let declared: Vec<Capability> = self
            .manifest
            .capabilities
            .iter()
            .map(|c| c.capability.clone())
            .collect();
        let mut undeclared: Vec<String> = self
            .denials()
            .into_iter()
            .filter(|denied| {
                Capability::parse(denied).is_ok_and(|cap| {
                    !declared
                        .iter()
                        .any(|d| crate::pipeline::decide::grant_covers(d, &cap))
                })
            })
            .collect();
        undeclared.dedup();
        let teardown = self
            .host
            .shutdown()
            .into_iter()
            .find(|r| r.id == self.id)
            .and_then(|r| match r.outcome {
                TeardownOutcome::Clean => None,
                other => Some(format!("{other:?}")),
            });
        let leaks = Leaks {
            undeclared,
            teardown,
        };
        if leaks == Leaks::default() {
            Ok(())
        } else {
            Err(leaks)
        }
    }

    fn token(&self) -> airlock_abi::abi::ContextToken {
        self.host.plugin(&self.id).map_or(
            airlock_abi::abi::ContextToken {
                slot: u32::MAX,
                generation: 0,
            },
            |p| p.context,
        )
    }

    fn observed<T>(&self, pick: impl Fn(&Observed) -> Option<T>) -> Vec<T> {
        let Some(observer) = &self.host.shared.observer else {
            return Vec::new();
        };
        observer
            .seen
            .lock()
            .iter()
            .filter(|(plugin, _)| plugin.as_str() == self.id)
            .filter_map(|(_, what)| pick(what))
            .collect()
    }

    fn error(&self, what: &str, e: &serde_json::Error) -> CallError {
        CallError {
            code: CallErrorCode::BadInput,
            plugin: self.id.clone(),
            action: what.to_owned(),
            message: e.to_string(),
        }
    }
}

fn level_of(level: airlock_abi::abi::LogLevel) -> Level {
    use airlock_abi::abi::LogLevel;
    match level {
        LogLevel::ERROR => Level::Error,
        LogLevel::WARN => Level::Warn,
        LogLevel::INFO => Level::Info,
        LogLevel::DEBUG => Level::Debug,
        _ => Level::Trace,
    }
}

//! A host that follows channels (`[[sources]]`): each source is polled at its interval; a new
//! digest is fetched, verified by digest, checked as a file would be, installed under the name
//! the plugin's library already has, and reloaded. A build refused at any step — digest,
//! checks, load — never replaces the serving one: the files and the lock entry it replaced are
//! put back. Every step is logged, and what happened is in the audit log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use super::install::{install_file, installed, place, remove_library, unpin, Origin};
use super::reference::{ArtifactRef, Repository, Selector};
use super::{fetch, open, resolve, FleetError, RegistryOptions, HOST_TARGET};
use airlock_abi::manifest::PluginId;

use crate::error::Error;
use crate::library::file::{read_library, DEFAULT_MAX_LIBRARY_SIZE};
use crate::library::lock::{Lock, LockEntry};
use crate::library::signature::signature_path;
use crate::policy::{Channel, Source};
use crate::runtime::outcome::ReloadOutcome;
use crate::runtime::HostShared;
use crate::services::AuditOutcome;

/// What one look at a source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    /// The channel points where it did (or to what is installed already).
    Unchanged {
        /// The source.
        source: String,
        /// The digest it points to.
        digest: String,
    },
    /// A new build passed every check and serves now.
    Installed {
        /// The source.
        source: String,
        /// The plugin.
        plugin: String,
        /// Its version.
        version: String,
        /// The digest of its manifest.
        digest: String,
    },
    /// A new build was refused; whatever served keeps serving. The source is not tried again
    /// until it points elsewhere.
    Refused {
        /// The source.
        source: String,
        /// The digest it points to, if it was read that far.
        digest: Option<String>,
        /// Why.
        why: String,
    },
    /// The registry could not be asked; the next interval tries again.
    Unreachable {
        /// The source.
        source: String,
        /// Why.
        why: String,
    },
}

/// Follows a host's sources until dropped.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    sources: usize,
}

impl std::fmt::Display for SourceOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unchanged { source, digest } => write!(f, "{source}: unchanged ({digest})"),
            Self::Installed {
                source,
                plugin,
                version,
                digest,
            } => write!(
                f,
                "{source}: {plugin} {version} installed and loaded ({digest})"
            ),
            Self::Refused {
                source,
                digest,
                why,
            } => write!(
                f,
                "{source}: refused {}: {why}",
                digest.as_deref().unwrap_or("a build")
            ),
            Self::Unreachable { source, why } => write!(f, "{source}: not reached: {why}"),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Follower {
    /// How many sources it follows.
    pub fn sources(&self) -> usize {
        self.sources
    }

    pub(crate) fn start(
        host: Weak<HostShared>,
        sources: Vec<Source>,
        on_outcome: impl Fn(&SourceOutcome) + Send + 'static,
    ) -> Result<Self, Error> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let count = sources.len();
        let thread = std::thread::Builder::new()
            .name("airlock-follow".to_owned())
            .spawn(move || run(&host, &sources, &flag, &on_outcome))
            .map_err(|e| Error::Watch(e.to_string()))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            sources: count,
        })
    }
}

fn run(
    host: &Weak<HostShared>,
    sources: &[Source],
    stop: &(Mutex<bool>, Condvar),
    on_outcome: &dyn Fn(&SourceOutcome),
) {
    if sources.is_empty() {
        return;
    }
    let mut due = vec![Instant::now(); sources.len()];
    let mut seen: Vec<Option<String>> = vec![None; sources.len()];
    loop {
        for (n, source) in sources.iter().enumerate() {
            if due[n] > Instant::now() {
                continue;
            }
            let Some(shared) = host.upgrade() else {
                return;
            };
            let outcome = poll(&shared, source, &mut seen[n]);
            drop(shared);
            log(&outcome);
            on_outcome(&outcome);
            due[n] = Instant::now() + source.interval;
        }
        let next = due.iter().min().copied().unwrap_or_else(Instant::now);
        let (stopped, wake) = stop;
        let guard = stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wait = next.saturating_duration_since(Instant::now());
        let (guard, _) = wake
            .wait_timeout_while(guard, wait, |stopped| !*stopped)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *guard {
            return;
        }
    }
}

fn log(outcome: &SourceOutcome) {
    match outcome {
        SourceOutcome::Unchanged { source, digest } => {
            tracing::debug!(target: "airlock::fleet", source, digest, "unchanged");
        }
        SourceOutcome::Installed {
            source,
            plugin,
            version,
            digest,
        } => {
            tracing::info!(target: "airlock::fleet", source, plugin, version, digest, "installed and loaded")
        }
        SourceOutcome::Refused {
            source,
            digest,
            why,
        } => {
            tracing::warn!(target: "airlock::fleet", source, digest = digest.as_deref().unwrap_or("-"), "refused: {why}");
        }
        SourceOutcome::Unreachable { source, why } => {
            tracing::warn!(target: "airlock::fleet", source, "not reached: {why}");
        }
    }
}

/// What the install replaced, to put back if the new build does not load.
struct Replaced {
    library: Option<(PathBuf, Vec<u8>, Option<Vec<u8>>)>,
    pin: Option<LockEntry>,
}

fn poll(host: &HostShared, source: &Source, seen: &mut Option<String>) -> SourceOutcome {
    let name = source.reference();
    let reference = ArtifactRef {
        repository: Repository::Registry {
            registry: source.registry.clone(),
            repository: source.repository.clone(),
        },
        selector: match &source.channel {
            Channel::Tag(tag) => Selector::Tag(tag.clone()),
            Channel::Range(range) => Selector::Range(range.clone()),
        },
    };
    let policy = &host.options.policy;
    let options = RegistryOptions {
        insecure: policy.host().insecure_registries.clone(),
    };
    let refused = |digest: Option<&str>, plugin: &str, why: String| {
        host.audit.record(
            plugin,
            0,
            &name,
            AuditOutcome::SourceRefused,
            &format!("{} {why}", digest.unwrap_or("-")),
        );
        SourceOutcome::Refused {
            source: name.clone(),
            digest: digest.map(str::to_owned),
            why,
        }
    };
    let expected = source.plugin.as_ref().map_or("", |p| p.as_str());
    let mut store = match open(&reference, &options, false) {
        Ok(store) => store,
        Err(e) => {
            return SourceOutcome::Unreachable {
                source: name,
                why: e.to_string(),
            }
        }
    };
    let resolved = match resolve(store.as_mut(), &reference, HOST_TARGET) {
        Ok(resolved) => resolved,
        Err(e @ FleetError::Registry { .. }) => {
            return SourceOutcome::Unreachable {
                source: name,
                why: e.to_string(),
            }
        }
        Err(e) => return refused(None, expected, e.to_string()),
    };
    let digest = resolved.digest.clone();
    if seen.as_deref() == Some(digest.as_str()) {
        return SourceOutcome::Unchanged {
            source: name,
            digest,
        };
    }
    *seen = Some(digest.clone());
    let Some(dir) = host.options.dirs.first() else {
        return refused(
            Some(&digest),
            expected,
            "the host has no plugin directory to install into".into(),
        );
    };
    let lock = policy.host().lock.as_deref();
    let pins = lock.and_then(|l| Lock::from_file(l).ok());
    if let Some(plugin) = &source.plugin {
        if pins
            .as_ref()
            .and_then(|l| l.get(plugin))
            .and_then(|e| e.digest.as_deref())
            == Some(digest.as_str())
        {
            return SourceOutcome::Unchanged {
                source: name,
                digest,
            };
        }
    }
    let staging = match tempfile::tempdir() {
        Ok(staging) => staging,
        Err(e) => {
            return refused(
                Some(&digest),
                expected,
                format!("cannot make a staging directory: {e}"),
            )
        }
    };
    let fetched = match fetch(store.as_mut(), &resolved, staging.path()) {
        Ok(fetched) => fetched,
        Err(e) => return refused(Some(&digest), expected, e.to_string()),
    };
    let id = match read_library(&fetched.library, &fetched.library, DEFAULT_MAX_LIBRARY_SIZE) {
        Ok(file) => file.manifest.id.to_string(),
        Err(refusal) => return refused(Some(&digest), expected, refusal.to_string()),
    };
    if !expected.is_empty() && expected != id {
        return refused(
            Some(&digest),
            expected,
            format!("the build holds plugin {id}; this source is for {expected}"),
        );
    }
    let current = installed(dir).into_iter().find(|i| i.id == id);
    let library = match &current {
        Some(current) => match rename_like(&fetched.library, &current.path) {
            Ok(path) => path,
            Err(e) => return refused(Some(&digest), &id, e.to_string()),
        },
        None => fetched.library.clone(),
    };
    let replaced = Replaced {
        library: current.as_ref().and_then(|c| {
            let bytes = std::fs::read(&c.path).ok()?;
            Some((
                c.path.clone(),
                bytes,
                std::fs::read(signature_path(&c.path)).ok(),
            ))
        }),
        pin: pins
            .as_ref()
            .and_then(|l| l.get(&PluginId::new(&id).ok()?).cloned()),
    };
    let origin = Origin {
        source: reference.repository_text()
            + &match &source.channel {
                Channel::Tag(tag) => format!(":{tag}"),
                Channel::Range(_) => String::new(),
            },
        range: match &source.channel {
            Channel::Range(range) => Some(range.to_string()),
            Channel::Tag(_) => None,
        },
        digest: digest.clone(),
    };
    let placed = match install_file(&library, dir, policy, lock, true, Some(&origin)) {
        Ok(placed) => placed,
        Err(e) => return refused(Some(&digest), &id, e.to_string()),
    };
    let version = placed.checked.file.manifest.version.to_string();
    match host.reload_file(&placed.target, false) {
        ReloadOutcome::Refused { refusal, .. } => {
            let put_back = put_back(&placed.target, &id, replaced, lock);
            let why = match put_back {
                Ok(()) => format!("it did not load: {refusal}; the serving build was kept"),
                Err(e) => format!("it did not load: {refusal}; putting the serving build's files back failed: {e}"),
            };
            refused(Some(&digest), &id, why)
        }
        _ => {
            host.audit.record(
                &id,
                0,
                &name,
                AuditOutcome::SourceInstalled,
                &format!("{digest} version {version}"),
            );
            SourceOutcome::Installed {
                source: name,
                plugin: id,
                version,
                digest,
            }
        }
    }
}

/// Renames a fetched library (and its signature) to the file name the installed one has.
fn rename_like(fetched: &Path, installed: &Path) -> Result<PathBuf, FleetError> {
    let Some(name) = installed.file_name() else {
        return Ok(fetched.to_owned());
    };
    let to = fetched.with_file_name(name);
    if to != fetched {
        let signature = signature_path(fetched);
        if signature.exists() {
            std::fs::rename(&signature, signature_path(&to)).map_err(FleetError::io(&signature))?;
        }
        std::fs::rename(fetched, &to).map_err(FleetError::io(fetched))?;
    }
    Ok(to)
}

/// Puts back what an install replaced: the library, its signature and its pin (or, for a plugin
/// that was not installed, takes the new one away).
fn put_back(
    target: &Path,
    id: &str,
    replaced: Replaced,
    lock: Option<&Path>,
) -> Result<(), FleetError> {
    match replaced.library {
        Some((path, bytes, signature)) => {
            match signature {
                Some(text) => place(&signature_path(&path), &text)?,
                None => {
                    let _ = std::fs::remove_file(signature_path(&path));
                }
            }
            place(&path, &bytes)?;
        }
        None => remove_library(target)?,
    }
    let Some(lock) = lock else { return Ok(()) };
    match replaced.pin {
        Some(entry) => {
            let locked = |e: Error| FleetError::Conflict(e.to_string());
            let mut entries = Lock::from_file(lock).map_err(locked)?.entries().clone();
            if let Ok(plugin) = PluginId::new(id) {
                entries.insert(plugin, entry);
            }
            Lock::new(lock, entries).write().map_err(locked)
        }
        None => unpin(lock, id).map(drop),
    }
}

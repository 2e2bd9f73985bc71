//! One look at a followed source, in its steps: ask where the channel points; fetch a new
//! build and verify it by digest; check it as a file and place it under the name the plugin's
//! library already has; load it — or, if it does not load, put back the files and the pin it
//! replaced. Each refusal is audited; the serving build is never the one given up.

use std::path::{Path, PathBuf};

use airlock_abi::manifest::PluginId;

use super::follow::SourceOutcome;
use super::install::{
    install_file, installed, place, remove_library, unpin, Destination, InstalledFile, Origin,
};
use super::reference::{ArtifactRef, Repository, Selector};
use super::{fetch, open, resolve, Fetched, FleetError, RegistryOptions, HOST_TARGET};
use crate::error::Error;
use crate::library::file::{read_library, DEFAULT_MAX_LIBRARY_SIZE};
use crate::library::lock::{Lock, LockEntry};
use crate::library::signature::signature_path;
use crate::policy::{Channel, Source};
use crate::runtime::outcome::ReloadOutcome;
use crate::runtime::HostShared;
use crate::services::AuditOutcome;

/// A step's way out: the outcome the look ends with.
type Step<T> = Result<T, SourceOutcome>;

/// One look at `source`; `seen` is the digest the last look found (a refused digest is not
/// tried again until the channel points elsewhere).
pub(super) fn poll(host: &HostShared, source: &Source, seen: &mut Option<String>) -> SourceOutcome {
    let look = Look {
        host,
        source,
        name: source.reference(),
    };
    look.run(seen).unwrap_or_else(|outcome| outcome)
}

struct Look<'a> {
    host: &'a HostShared,
    source: &'a Source,
    name: String,
}

/// What an install replaced, to put back if the new build does not load.
struct Replaced {
    library: Option<(PathBuf, Vec<u8>, Option<Vec<u8>>)>,
    pin: Option<LockEntry>,
}

impl Look<'_> {
    fn run(&self, seen: &mut Option<String>) -> Step<SourceOutcome> {
        let reference = self.reference();
        let policy = &self.host.options.policy;
        let options = RegistryOptions::from_policy(policy);
        let unreachable = |e: FleetError| SourceOutcome::Unreachable {
            source: self.name.clone(),
            why: e.to_string(),
        };
        let mut store = open(&reference, &options, false).map_err(unreachable)?;
        let resolved = match resolve(store.as_mut(), &reference, HOST_TARGET) {
            Ok(resolved) => resolved,
            Err(e @ FleetError::Registry { .. }) => return Err(unreachable(e)),
            Err(e) => return Err(self.refused(None, self.expected(), e.to_string())),
        };
        let digest = resolved.digest.clone();
        if seen.as_deref() == Some(digest.as_str()) || self.pinned_already(&digest) {
            *seen = Some(digest.clone());
            return Ok(SourceOutcome::Unchanged {
                source: self.name.clone(),
                digest,
            });
        }
        *seen = Some(digest.clone());
        tracing::info!(target: "airlock::fleet", source = %self.name, digest, "a new build: fetching it");
        let staging = tempfile::tempdir().map_err(|e| {
            self.refused(
                Some(&digest),
                self.expected(),
                format!("no staging directory: {e}"),
            )
        })?;
        let fetched = fetch(store.as_mut(), &resolved, staging.path())
            .map_err(|e| self.refused(Some(&digest), self.expected(), e.to_string()))?;
        let origin = self.origin(&reference, &digest);
        self.swap(&fetched, &origin)
    }

    fn reference(&self) -> ArtifactRef {
        ArtifactRef {
            repository: Repository::Registry {
                registry: self.source.registry.clone(),
                repository: self.source.repository.clone(),
            },
            selector: match &self.source.channel {
                Channel::Tag(tag) => Selector::Tag(tag.clone()),
                Channel::Range(range) => Selector::Range(range.clone()),
            },
        }
    }

    fn origin(&self, reference: &ArtifactRef, digest: &str) -> Origin {
        let (tag, range) = match &self.source.channel {
            Channel::Tag(tag) => (format!(":{tag}"), None),
            Channel::Range(range) => (String::new(), Some(range.to_string())),
        };
        Origin {
            source: reference.repository_text() + &tag,
            range,
            digest: digest.to_owned(),
        }
    }

    /// The plugin the source must hold, or "" when any.
    fn expected(&self) -> &str {
        self.source.plugin.as_ref().map_or("", |p| p.as_str())
    }

    /// Whether the lock pins the source's plugin with this digest already (a restarted host).
    fn pinned_already(&self, digest: &str) -> bool {
        let (Some(lock), Some(plugin)) = (self.lock(), &self.source.plugin) else {
            return false;
        };
        Lock::from_file(lock)
            .ok()
            .and_then(|l| l.get(plugin).and_then(|e| e.digest.clone()))
            .is_some_and(|d| d == digest)
    }

    fn lock(&self) -> Option<&Path> {
        self.host.options.policy.host().lock.as_deref()
    }

    fn refused(&self, digest: Option<&str>, plugin: &str, why: String) -> SourceOutcome {
        let detail = format!("{} {why}", digest.unwrap_or("-"));
        self.host
            .audit
            .record(plugin, 0, &self.name, AuditOutcome::SourceRefused, &detail);
        SourceOutcome::Refused {
            source: self.name.clone(),
            digest: digest.map(str::to_owned),
            why,
        }
    }

    /// Checks and places the fetched build, and loads it; a build that does not load has what
    /// it replaced put back.
    fn swap(&self, fetched: &Fetched, origin: &Origin) -> Step<SourceOutcome> {
        let digest = origin.digest.as_str();
        let refuse = |plugin: &str, why: String| self.refused(Some(digest), plugin, why);
        let id = read_library(&fetched.library, &fetched.library, DEFAULT_MAX_LIBRARY_SIZE)
            .map_err(|r| refuse(self.expected(), r.to_string()))?
            .manifest
            .id
            .to_string();
        if !self.expected().is_empty() && self.expected() != id {
            let why = format!(
                "the build holds plugin {id}; this source is for {}",
                self.expected()
            );
            return Err(refuse(self.expected(), why));
        }
        let (dir, current, library) = self.destination(&id, fetched, digest)?;
        let replaced = Replaced {
            library: current.as_ref().and_then(|c| {
                let bytes = std::fs::read(&c.path).ok()?;
                Some((
                    c.path.clone(),
                    bytes,
                    std::fs::read(signature_path(&c.path)).ok(),
                ))
            }),
            pin: self.lock().and_then(|lock| {
                let lock = Lock::from_file(lock).ok()?;
                lock.get(&PluginId::new(&id).ok()?).cloned()
            }),
        };
        let policy = &self.host.options.policy;
        let to = Destination {
            dir,
            policy,
            lock: self.lock(),
            replace: true,
        };
        let placed =
            install_file(&library, to, Some(origin)).map_err(|e| refuse(&id, e.to_string()))?;
        let version = placed.checked.file.manifest.version.to_string();
        tracing::info!(
            target: "airlock::fleet",
            source = %self.name,
            digest,
            plugin = %id,
            version,
            file = %placed.target.display(),
            "verified and placed: loading it"
        );
        if let ReloadOutcome::Refused { refusal, .. } = self.host.reload_file(&placed.target, false)
        {
            let why = match put_back(&placed.target, &id, replaced, self.lock()) {
                Ok(()) => format!("it did not load: {refusal}; the serving build was kept"),
                Err(e) => format!(
                    "it did not load: {refusal}; putting the serving build's files back failed: {e}"
                ),
            };
            return Err(refuse(&id, why));
        }
        let detail = format!("{digest} version {version}");
        self.host
            .audit
            .record(&id, 0, &self.name, AuditOutcome::SourceInstalled, &detail);
        Ok(SourceOutcome::Installed {
            source: self.name.clone(),
            plugin: id,
            version,
            digest: digest.to_owned(),
        })
    }

    /// Where a fetched build goes: the plugin directory that holds the plugin's library (else
    /// the first), the installed file it replaces, and the build renamed to that file's name.
    fn destination(
        &self,
        id: &str,
        fetched: &Fetched,
        digest: &str,
    ) -> Step<(&Path, Option<InstalledFile>, PathBuf)> {
        let dirs = &self.host.options.dirs;
        let holding = dirs.iter().find_map(|dir| {
            let found = installed(dir);
            let current = found.iter().find(|i| i.id == id).cloned()?;
            Some((dir, found, current))
        });
        let (dir, found, current) = match holding {
            Some((dir, found, current)) => (dir, found, Some(current)),
            None => {
                let Some(dir) = dirs.first() else {
                    return Err(self.refused(
                        Some(digest),
                        id,
                        "the host has no plugin directory to install into".into(),
                    ));
                };
                (dir, installed(dir), None)
            }
        };
        let name = fetched.library.file_name().unwrap_or_default();
        if let (None, Some(other)) = (
            &current,
            found.iter().find(|i| i.path.file_name() == Some(name)),
        ) {
            let why = format!(
                "its file name is taken by plugin {} ({}): a source never replaces another plugin",
                other.id,
                other.path.display()
            );
            return Err(self.refused(Some(digest), id, why));
        }
        let library = match &current {
            Some(current) => rename_like(&fetched.library, &current.path)
                .map_err(|e| self.refused(Some(digest), id, e.to_string()))?,
            None => fetched.library.clone(),
        };
        Ok((dir, current, library))
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

/// Puts back what an install replaced: the library, its signature and its pin (or, for a
/// plugin that was not installed, takes the new one away).
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

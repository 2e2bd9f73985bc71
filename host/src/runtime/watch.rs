//! Hot reload's eyes: watches the plugin directories (not single files: a rebuild replaces the
//! file, and with it the inode a file watch would follow), waits until a changed library has
//! been quiet for the debounce time, then asks the host to reload it. The host skips unchanged
//! bytes and refuses a file that is not whole, so a half-written library never reaches the
//! dynamic linker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::Error;
use crate::library::discover::library_suffix;
use crate::runtime::outcome::ReloadOutcome;

/// What the watcher asks of the runtime: reload the library at `path` if its bytes changed,
/// or tear down the plugin whose library was removed.
pub(crate) trait Reload: Send + Sync {
    fn reload_file(&self, path: &Path, force: bool) -> ReloadOutcome;
    fn remove_file(&self, path: &Path) -> Option<ReloadOutcome>;
}

/// The debounce used when none is given: long enough for a linker to finish writing.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches plugin directories for a host; stops when dropped.
pub struct Watcher {
    _inner: RecommendedWatcher,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Watches `dirs` for `host`, and calls `on_reload` with what each change made of it (an
    /// unchanged library aside).
    pub(crate) fn start(
        host: Weak<dyn Reload>,
        dirs: &[PathBuf],
        debounce: Duration,
        on_reload: impl Fn(&ReloadOutcome) + Send + 'static,
    ) -> Result<Self, Error> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let inner = watch(dirs, tx)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("airlock-watch".to_owned())
            .spawn(move || follow(&host, &rx, debounce, &flag, on_reload))
            .map_err(|e| Error::Watch(e.to_string()))?;
        Ok(Self {
            _inner: inner,
            stop,
            thread: Some(thread),
        })
    }
}

/// A watcher of `dirs` that sends each path whose content may have changed to `tx`.
fn watch(dirs: &[PathBuf], tx: Sender<PathBuf>) -> Result<RecommendedWatcher, Error> {
    let mut inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only changes: the host's own reads open the file too, and a reload triggered by
        // reading the file would read it again, without end.
        match event {
            Ok(event) if changes_content(&event.kind) => {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
            _ => {}
        }
    })
    .map_err(|e| Error::Watch(e.to_string()))?;
    for dir in dirs {
        inner
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| Error::Watch(format!("{}: {e}", dir.display())))?;
    }
    Ok(inner)
}

/// The watcher's thread: collects the changed libraries from `rx` and, once one has been quiet
/// for `debounce`, has `host` reload or remove it; until `stop` is set or the host is gone.
fn follow(
    host: &Weak<dyn Reload>,
    rx: &Receiver<PathBuf>,
    debounce: Duration,
    stop: &AtomicBool,
    on_reload: impl Fn(&ReloadOutcome),
) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    let tick = (debounce / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
    while !stop.load(Ordering::Acquire) {
        match rx.recv_timeout(tick) {
            // A library, or its signature (which decides whether it loads).
            Ok(path) if is_library(&path) => {
                pending.insert(path, Instant::now());
            }
            Ok(path) if signed_library(&path).is_some() => {
                if let Some(library) = signed_library(&path) {
                    pending.insert(library, Instant::now());
                }
            }
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for path in quiet(&mut pending, debounce) {
            let Some(host) = host.upgrade() else {
                return;
            };
            let outcome = apply_change(&*host, &path);
            drop(host);
            if let Some(outcome) = outcome.filter(|o| !matches!(o, ReloadOutcome::Unchanged { .. }))
            {
                on_reload(&outcome);
            }
        }
    }
}

/// Takes out of `pending` the paths quiet for `debounce`: files that are there before files
/// that are gone, so that a library renamed is reloaded at its new name (its state handed over)
/// before the old name is seen gone.
fn quiet(pending: &mut HashMap<PathBuf, Instant>, debounce: Duration) -> Vec<PathBuf> {
    let now = Instant::now();
    let mut quiet: Vec<PathBuf> = pending
        .iter()
        .filter(|(_, last)| now.duration_since(**last) >= debounce)
        .map(|(p, _)| p.clone())
        .collect();
    quiet.sort_by_key(|p| !p.is_file());
    for path in &quiet {
        pending.remove(path);
    }
    quiet
}

/// What a change at `path` makes of its plugin: reloaded if the file is there, torn down if it
/// is gone (removed, or renamed away).
fn apply_change(host: &dyn Reload, path: &Path) -> Option<ReloadOutcome> {
    if path.is_file() {
        Some(host.reload_file(path, false))
    } else if std::fs::symlink_metadata(path).is_err() {
        host.remove_file(path)
    } else {
        None
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether an event may have changed a file's bytes, name or permissions (not a read).
fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(_)
            | EventKind::Remove(_)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

fn is_library(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == library_suffix())
}

/// The library a signature file (`libfoo.so.minisig`) is beside.
fn signed_library(path: &Path) -> Option<std::path::PathBuf> {
    (path.extension()? == crate::library::signature::SIGNATURE_SUFFIX)
        .then(|| path.with_extension(""))
        .filter(|library| is_library(library))
}

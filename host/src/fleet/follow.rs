//! A host that follows channels (`[[sources]]`): each source is polled at its interval; a new
//! digest is fetched, verified by digest, checked as a file would be, installed under the name
//! the plugin's library already has, and reloaded. A build refused at any step — digest,
//! checks, load — never replaces the serving one: the files and the lock entry it replaced are
//! put back. Every step is logged, and what happened is in the audit log.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use super::poll::poll;
use crate::error::Error;
use crate::policy::Source;
use crate::runtime::HostShared;

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
            due[n] = Instant::now() + jittered(source.interval);
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

/// The interval give or take a tenth, at random: a fleet of hosts started together spreads its
/// polls instead of asking the registry all at once.
fn jittered(interval: std::time::Duration) -> std::time::Duration {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    let unit = f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX);
    interval.mul_f64(0.9 + 0.2 * unit)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn polls_are_spread_within_a_tenth_of_the_interval() {
        let interval = Duration::from_secs(10);
        let spread: Vec<Duration> = (0..200).map(|_| super::jittered(interval)).collect();
        assert!(spread
            .iter()
            .all(|d| (Duration::from_secs(9)..=Duration::from_secs(11)).contains(d)));
        let (low, high) = (spread.iter().min(), spread.iter().max());
        assert!(high > low, "not all alike: {low:?} {high:?}");
    }
}

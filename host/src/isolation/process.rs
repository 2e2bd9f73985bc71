//! The host's side of an isolated plugin: a worker process started from the Airlock worker
//! executable, given the checked library's bytes, and driven over a [`Channel`]. While a
//! command runs, the plugin's requests come back over the channel and are served here by the
//! host's own vtable functions, with the plugin's real context token: the membrane, the audit
//! log, kv and revocation all stay in the host. A worker that dies, or breaks the channel,
//! fails the call in progress with `worker_failure`; one that overruns the call's timeout is
//! killed.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use airlock_abi::abi::{ContextToken, ErrorCode, HostError};
use parking_lot::Mutex;

use super::requests::{answered, serve};
use super::wire::{Channel, FromWorker, ToWorker};

/// A call whose worker died or broke the channel (host-internal: never a plugin's code).
pub(crate) const WORKER_FAILURE: ErrorCode = ErrorCode(0x4149_0001);
/// A call that overran its timeout and had its worker killed (host-internal).
pub(crate) const WORKER_KILLED: ErrorCode = ErrorCode(0x4149_0002);
/// A call to a worker already dead, waiting for its restart (host-internal; not a new fault).
pub(crate) const WORKER_GONE: ErrorCode = ErrorCode(0x4149_0003);

/// How to start workers for one library.
#[derive(Debug)]
pub(crate) struct WorkerSpec {
    /// The worker executable.
    pub(crate) program: PathBuf,
    /// The library's file, for messages.
    pub(crate) label: String,
    /// The checked bytes: what every worker of this library loads.
    pub(crate) bytes: Vec<u8>,
    /// The bytes were pinned or signed: a worker loads them from sealed memory or not at all.
    pub(crate) sealed_only: bool,
    /// How long one call may take before the worker is killed (its timeout and grace).
    pub(crate) call_timeout: Duration,
    /// How long `create` may take before the worker is killed (the init deadline).
    pub(crate) init_deadline: Duration,
    /// A worker started to validate the config, kept for the `create` that follows.
    pub(crate) spare: Mutex<Option<Worker>>,
    /// The resource limits each worker puts on itself.
    pub(crate) limits: crate::policy::WorkerLimits,
    /// The sandbox each worker puts itself in.
    pub(crate) sandbox: crate::policy::Sandbox,
    /// What the last worker said of its sandbox.
    pub(crate) sandboxed: Mutex<String>,
    /// Keep the host dumpable (the policy's `[host] dumpable`).
    pub(crate) dumpable: bool,
}

/// One worker process and its channel.
pub(crate) struct Worker {
    child: Mutex<Child>,
    /// The process, as a descriptor: a signal sent through it reaches this worker even after
    /// it was reaped (never a process that reused its id). `None` on a kernel without pidfds.
    pidfd: Option<OwnedFd>,
    channel: Mutex<Channel>,
    /// The context the instance was created with (set by `create`).
    token: Mutex<Option<ContextToken>>,
    dead: AtomicBool,
    call_timeout: Duration,
    init_deadline: Duration,
    /// Its resource limits, for messages.
    limits: String,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pid", &self.child.lock().id())
            .field("dead", &self.dead.load(Ordering::Relaxed))
            .finish()
    }
}

impl WorkerSpec {
    /// A worker ready to create an instance: the spare one if there is one, else a new one.
    ///
    /// # Errors
    ///
    /// Why the worker could not be started or could not load the library (its refusal's reason
    /// code and detail, when it got that far).
    pub(crate) fn worker(&self) -> Result<Worker, (Option<String>, String)> {
        if let Some(spare) = self.spare.lock().take() {
            return Ok(spare);
        }
        Worker::start(self)
    }
}

impl Worker {
    /// Starts a worker and has it load the library (stage 4, in the worker).
    pub(crate) fn start(spec: &WorkerSpec) -> Result<Worker, (Option<String>, String)> {
        if !spec.dumpable {
            super::sandbox::protect_host_memory();
        }
        let started = || -> io::Result<(Child, Channel)> {
            let (host_end, worker_end) = UnixStream::pair()?;
            let mut command = Command::new(&spec.program);
            // The worker gets nothing of the host's environment but its limits and sandbox.
            command.env_clear();
            if let Some(sandbox) = super::sandbox::to_env(&spec.sandbox) {
                command.env(super::sandbox::ENV, sandbox);
            }
            // The channel is the worker's standard input; what the plugin prints goes where
            // the host's own output goes, as it would in-process.
            let mut child = command
                .stdin(Stdio::from(OwnedFd::from(worker_end)))
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .env(super::limits::ENV, super::limits::to_env(&spec.limits))
                .spawn()?;
            let opened = Channel::new(host_end).and_then(|mut channel| {
                channel.open()?;
                Ok(channel)
            });
            match opened {
                Ok(channel) => Ok((child, channel)),
                Err(e) => {
                    // Never left running, nor unreaped.
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(e)
                }
            }
        };
        let (child, channel) =
            started().map_err(|e| (None, super::cannot_start(&spec.program, &e)))?;
        let worker = Worker {
            limits: super::limits::describe(&spec.limits),
            init_deadline: spec.init_deadline,
            // Opened before anything can reap the child, so it names this very process.
            pidfd: super::limits::pidfd(child.id()),
            child: Mutex::new(child),
            channel: Mutex::new(channel),
            token: Mutex::new(None),
            dead: AtomicBool::new(false),
            call_timeout: spec.call_timeout,
        };
        let mut out = Vec::new();
        let load = ToWorker::Load {
            label: &spec.label,
            bytes: &spec.bytes,
            sealed_only: spec.sealed_only,
        };
        match worker.exchange(&load, &mut out, Some(spec.call_timeout.max(LOAD_TIMEOUT))) {
            ErrorCode::OK => {
                *spec.sandboxed.lock() = String::from_utf8_lossy(&out).into_owned();
                Ok(worker)
            }
            _ => {
                let text = String::from_utf8_lossy(&out).into_owned();
                // The worker answers a refusal as `<reason code>: <detail>`.
                Err(match text.split_once(": ") {
                    Some((reason, detail)) if !reason.contains(' ') => {
                        (Some(reason.to_owned()), detail.to_owned())
                    }
                    _ => (None, text),
                })
            }
        }
    }

    /// Creates the instance in the worker with the context `token`, within the init deadline
    /// (a worker still creating then is killed: no host thread is left serving it).
    pub(crate) fn create(&self, token: ContextToken, out: &mut Vec<u8>) -> ErrorCode {
        *self.token.lock() = Some(token);
        let create = ToWorker::Create {
            slot: token.slot,
            generation: token.generation,
        };
        self.exchange(&create, out, Some(self.init_deadline))
    }

    /// Asks the plugin to validate a config.
    pub(crate) fn validate(&self, config: &[u8], out: &mut Vec<u8>) -> ErrorCode {
        self.exchange(&ToWorker::Validate { config }, out, Some(self.call_timeout))
    }

    /// One invocation of the instance.
    pub(crate) fn call(
        &self,
        kind: u32,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> ErrorCode {
        let call = ToWorker::Call {
            kind,
            index,
            name,
            payload,
        };
        self.exchange(&call, out, Some(self.call_timeout))
    }

    /// Tears the instance down; the worker exits.
    pub(crate) fn destroy(self, out: &mut Vec<u8>) -> ErrorCode {
        let code = self.exchange(&ToWorker::Destroy, out, Some(self.call_timeout));
        let mut child = self.child.lock();
        if code != ErrorCode::OK || !wait_for_exit(&mut child, Duration::from_millis(500)) {
            self.signal_kill(&mut child);
            let _ = child.wait();
        }
        code
    }

    /// Kills the worker now, without waiting for it (the watchdog, for a call past its timeout
    /// and grace: any host thread talking to the worker sees its channel close).
    pub(crate) fn kill_now(&self) {
        self.dead.store(true, Ordering::SeqCst);
        match &self.pidfd {
            Some(pidfd) => super::limits::kill(pidfd),
            // No pidfd: only with the child locked, where it cannot be reaped meanwhile.
            None => {
                if let Some(mut child) = self.child.try_lock() {
                    let _ = child.kill();
                }
            }
        }
    }

    /// SIGKILL to the worker, through its pidfd if it has one.
    fn signal_kill(&self, child: &mut Child) {
        match &self.pidfd {
            Some(pidfd) => super::limits::kill(pidfd),
            None => {
                let _ = child.kill();
            }
        }
    }

    /// Whether the worker has died (a call found it gone, or it was killed).
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Whether the worker has ended while no call was talking to it (killed from outside, or
    /// dead in its own thread); if so it is marked dead, and this says how it ended. A worker
    /// a call is talking to is left to that call.
    pub(crate) fn ended_unseen(&self) -> Option<String> {
        if self.is_dead() {
            return None;
        }
        let _idle = self.channel.try_lock()?;
        let status = self.child.try_lock()?.try_wait().ok().flatten()?;
        self.dead.store(true, Ordering::SeqCst);
        Some(super::limits::ended(status))
    }

    /// Sends `command` and serves the plugin's requests until the worker answers it; the
    /// answer or the failure's message is left in `out`.
    fn exchange(
        &self,
        command: &ToWorker<'_>,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> ErrorCode {
        out.clear();
        if self.is_dead() {
            out.extend_from_slice(
                b"the plugin's worker process died and has not been restarted yet",
            );
            return WORKER_GONE;
        }
        let mut channel = self.channel.lock();
        let deadline = timeout.map(|t| Instant::now() + t);
        channel.set_deadline(deadline);
        if let Err(e) = channel.send(command) {
            return self.broke(out, &e, timeout);
        }
        loop {
            // A plugin that keeps asking (logging in a loop) is stopped at the deadline too.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.overran(out, timeout);
            }
            let message = match channel.receive() {
                Ok(message) => message,
                Err(e) => return self.broke(out, &e, timeout),
            };
            let token = *self.token.lock();
            let reply = match message {
                FromWorker::Done { code, body } => return answered(code, body, out),
                request => serve(token, request),
            };
            if let Err(e) = send_reply(&mut channel, &reply) {
                return self.broke(out, &e, timeout);
            }
        }
    }

    /// The channel failed while a command was going: the deadline passed (the worker is killed)
    /// or the worker broke it.
    #[cold]
    fn broke(&self, out: &mut Vec<u8>, error: &io::Error, timeout: Option<Duration>) -> ErrorCode {
        if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            self.overran(out, timeout)
        } else {
            self.failed(out, error)
        }
    }

    /// The command overran its `timeout`: the worker is killed, and `out` says so.
    #[cold]
    fn overran(&self, out: &mut Vec<u8>, timeout: Option<Duration>) -> ErrorCode {
        self.kill();
        out.clear();
        out.extend_from_slice(
            format!(
                "the call overran its {} ms timeout; its worker process was killed",
                timeout.unwrap_or_default().as_millis()
            )
            .as_bytes(),
        );
        WORKER_KILLED
    }

    /// The worker broke the channel: it is dead (killed now if it is not), and `out` says how
    /// it ended.
    #[cold]
    fn failed(&self, out: &mut Vec<u8>, error: &io::Error) -> ErrorCode {
        self.dead.store(true, Ordering::SeqCst);
        let mut child = self.child.lock();
        let ended = if wait_for_exit(&mut child, Duration::from_millis(200)) {
            child.try_wait().ok().flatten()
        } else {
            self.signal_kill(&mut child);
            child.wait().ok()
        };
        let how = match ended {
            Some(status) => super::limits::ended(status),
            None => format!("the channel broke ({error})"),
        };
        out.clear();
        out.extend_from_slice(
            format!(
                "the plugin's worker process died: {how} (its limits: {})",
                self.limits
            )
            .as_bytes(),
        );
        WORKER_FAILURE
    }

    /// Kills the worker (a call overran its timeout and grace, or `create` its init
    /// deadline): the plugin has had its time, so SIGKILL, which it cannot catch or delay.
    fn kill(&self) {
        self.kill_now();
        let _ = self.child.lock().wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let mut child = self.child.lock();
        if !matches!(child.try_wait(), Ok(Some(_))) {
            self.signal_kill(&mut child);
            let _ = child.wait();
        }
    }
}

/// Sends the host's answer to one of the plugin's requests. An answer too large for the channel
/// is the plugin's error, not a dead worker: that error is sent instead.
fn send_reply(channel: &mut Channel, reply: &Result<Vec<u8>, HostError>) -> io::Result<()> {
    let sent = match reply {
        Ok(body) => channel.send(&ToWorker::Reply {
            code: 0,
            capability: "",
            body,
        }),
        Err(e) => channel.send(&ToWorker::Reply {
            code: e.code.0,
            capability: e.capability.as_str(),
            body: e.message.as_bytes(),
        }),
    };
    match sent {
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            let too_large = crate::membrane::host_error(
                airlock_abi::abi::HostErrorCode::INTERNAL,
                "",
                "the host's answer is larger than the worker's channel carries",
            );
            channel.send(&ToWorker::Reply {
                code: too_large.code.0,
                capability: "",
                body: too_large.message.as_bytes(),
            })
        }
        sent => sent,
    }
}

/// How long a worker may take to start and load its library.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits up to `patience` for `child` to exit; whether it did.
fn wait_for_exit(child: &mut Child, patience: Duration) -> bool {
    let until = Instant::now() + patience;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            _ => return false,
        }
    }
}

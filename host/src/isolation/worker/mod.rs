//! The worker process's side: the loop the `airlock-worker` executable runs. It reads commands
//! from the host on its standard input (one end of a Unix socket pair), runs stage 4 on the
//! library bytes the host checked, creates the instance and serves its entry points. The
//! context it gives the plugin (`forward.rs`) forwards every host function over the channel,
//! where the host serves it with the plugin's real token: the worker holds no authority of its
//! own.

mod forward;

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use airlock_abi::abi::{ContextToken, ErrorCode, InvocationKind};
use parking_lot::Mutex;

use super::wire::{Channel, FromWorker, ToWorker};
use crate::library::file::read_library_bytes;
use crate::loader;
use forward::forwarding_context;

/// The channel to the host, shared by the command loop and the forwarding vtable.
static CHANNEL: OnceLock<Mutex<Channel>> = OnceLock::new();

/// Whether a command is being served: the plugin's requests travel only then (it is the
/// worker's turn on the channel). Changed with the channel locked.
static SERVING: AtomicBool = AtomicBool::new(false);

/// The number of the command being served (a request checked against it under the lock
/// belongs to the command it started in).
static COMMAND: AtomicU64 = AtomicU64::new(0);

/// A command, owned (read with the channel locked, run with it free: the plugin's requests
/// need it while a command runs).
enum Command {
    Load {
        label: String,
        bytes: Vec<u8>,
        sealed_only: bool,
    },
    Validate {
        config: Vec<u8>,
    },
    Create {
        token: ContextToken,
    },
    Call {
        kind: u32,
        index: u32,
        name: String,
        payload: Vec<u8>,
    },
    Destroy,
    Stray,
}

impl Command {
    fn owned(command: ToWorker<'_>) -> Self {
        match command {
            ToWorker::Load {
                label,
                bytes,
                sealed_only,
            } => Self::Load {
                label: label.to_owned(),
                bytes: bytes.to_vec(),
                sealed_only,
            },
            ToWorker::Validate { config } => Self::Validate {
                config: config.to_vec(),
            },
            ToWorker::Create { slot, generation } => Self::Create {
                token: ContextToken { slot, generation },
            },
            ToWorker::Call {
                kind,
                index,
                name,
                payload,
            } => Self::Call {
                kind,
                index,
                name: name.to_owned(),
                payload: payload.to_vec(),
            },
            ToWorker::Destroy => Self::Destroy,
            ToWorker::Reply { .. } => Self::Stray,
        }
    }
}

/// The worker executable's whole program: serves the host on standard input until it is told
/// to destroy the instance or the host goes away.
pub fn worker_main() -> ExitCode {
    if std::env::var_os(super::PROBE_ENV).is_some() {
        // `airlock check`: confine this process as for a plugin, say what held, and exit.
        let (said, code) = match limits().and_then(|()| sandbox(None)) {
            Ok(status) => (status, ExitCode::SUCCESS),
            Err(message) => (message, ExitCode::from(1)),
        };
        println!("{said}");
        return code;
    }
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock-worker: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ends this worker when the host that started it is gone — also while the plugin is stuck in
/// a call and nobody reads the channel: the host's death makes this process an orphan, whose
/// parent is then another process. Started once the worker is sandboxed, so that it is one
/// thread as it enters the sandbox, and this thread is sandboxed too.
fn follow_the_host() -> io::Result<()> {
    let host = std::os::unix::process::parent_id();
    std::thread::Builder::new()
        .name("airlock-worker-host-watch".to_owned())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if std::os::unix::process::parent_id() != host {
                std::process::exit(3);
            }
        })
        .map(drop)
}

/// Applies the resource limits the host asked for.
fn limits() -> Result<(), String> {
    match std::env::var_os(super::limits::ENV) {
        Some(limits) => super::limits::apply(&limits.to_string_lossy())
            .map_err(|e| format!("the worker's resource limits could not be set: {e}")),
        None => Ok(()),
    }
}

/// Serves the host: once connected, runs each command it sends until it is told to destroy the
/// instance or it goes away.
fn serve() -> io::Result<()> {
    // The limits first: nothing of the plugin runs without them.
    limits().map_err(io::Error::other)?;
    let channel = connect()?;
    let mut plugin = Hosted::default();
    let mut out = Vec::new();
    while let Some(command) = next_command(channel)? {
        out.clear();
        let last = matches!(command, Command::Destroy);
        let code = plugin.run(command, &mut out);
        done(channel, code, &mut out)?;
        if last {
            break;
        }
    }
    Ok(())
}

/// The channel to the host on standard input, accepted and made the one the forwarding
/// vtable uses.
fn connect() -> io::Result<&'static Mutex<Channel>> {
    let socket = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut channel = Channel::new(socket)?;
    channel.accept()?;
    if CHANNEL.set(Mutex::new(channel)).is_err() {
        return Err(io::Error::other("the worker serves one host"));
    }
    CHANNEL
        .get()
        .ok_or_else(|| io::Error::other("the channel was not set"))
}

/// The host's next command, which is then the one served (`None`: the host is gone, nothing
/// is left to serve).
fn next_command(channel: &Mutex<Channel>) -> io::Result<Option<Command>> {
    let read = {
        let mut channel = channel.lock();
        let read = channel.command(Command::owned);
        COMMAND.fetch_add(1, Ordering::Relaxed);
        SERVING.store(read.is_ok(), Ordering::Relaxed);
        read
    };
    match read {
        Ok(command) => Ok(Some(command)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// What the worker runs for the host: its library, loaded once, and the instance it created.
#[derive(Default)]
struct Hosted {
    creator: Option<loader::Creator>,
    instance: Option<loader::Instance>,
    loaded: bool,
}

impl Hosted {
    /// Runs one command; its answer is the code returned and what it wrote to `out`.
    fn run(&mut self, command: Command, out: &mut Vec<u8>) -> ErrorCode {
        match command {
            Command::Load { .. } if self.loaded => {
                out.extend_from_slice(b"load_failed: this worker has loaded its library already");
                ErrorCode::INIT
            }
            Command::Load {
                label,
                bytes,
                sealed_only,
            } => {
                self.loaded = true;
                match load(&label, bytes, sealed_only) {
                    Ok((library, status)) => {
                        self.creator = Some(library);
                        out.extend_from_slice(status.as_bytes());
                        ErrorCode::OK
                    }
                    Err(message) => {
                        out.extend_from_slice(message.as_bytes());
                        ErrorCode::INIT
                    }
                }
            }
            Command::Validate { config } => match &self.creator {
                Some(creator) => answer(creator.validate_config(&config), out),
                None => not_loaded(out),
            },
            Command::Create { token } => match &self.creator {
                Some(creator) => match creator.create(forwarding_context(token)) {
                    Ok(created) => {
                        self.instance = Some(created);
                        ErrorCode::OK
                    }
                    Err(e) => {
                        out.extend_from_slice(e.message.as_bytes());
                        e.code
                    }
                },
                None => not_loaded(out),
            },
            Command::Call {
                kind,
                index,
                name,
                payload,
            } => match &self.instance {
                Some(instance) => instance.call(InvocationKind(kind), index, &name, &payload, out),
                None => not_loaded(out),
            },
            Command::Destroy => match self.instance.take().map(loader::Instance::destroy) {
                Some(Err(e)) => {
                    out.extend_from_slice(e.message.as_bytes());
                    e.code
                }
                _ => ErrorCode::OK,
            },
            Command::Stray => {
                out.extend_from_slice(b"a reply arrived with no request waiting for it");
                ErrorCode::HANDLER
            }
        }
    }
}

/// Answers the command being served; the plugin's requests are refused until the next one.
fn done(channel: &Mutex<Channel>, code: ErrorCode, out: &mut Vec<u8>) -> io::Result<()> {
    let mut channel = channel.lock();
    SERVING.store(false, Ordering::Relaxed);
    channel.answer(&FromWorker::Done {
        code: code.0,
        body: std::mem::take(out),
    })
}

/// Enters the sandbox the host asked for, if it asked; `library` is the staged copy when it is
/// a file the sandbox must let the dynamic linker read.
fn sandbox(library: Option<&std::fs::File>) -> Result<String, String> {
    match std::env::var_os(super::sandbox::ENV) {
        Some(text) => {
            super::sandbox::enter(&super::sandbox::from_env(&text.to_string_lossy()), library)
        }
        None => Ok("not sandboxed (the policy says sandbox = false)".to_owned()),
    }
}

/// Stage 2 again on the bytes the host checked, then stage 4 with the sandbox between the copy
/// and `dlopen`: the sealed copy is made, the worker sandboxes itself, and only then does any
/// byte of the library run (its constructors, abi_stable's checks). A refusal is answered as
/// `<reason code>: <detail>`; on success, what the sandbox enforces.
fn load(
    label: &str,
    bytes: Vec<u8>,
    sealed_only: bool,
) -> Result<(loader::Creator, String), String> {
    let refused = |r: crate::error::Refusal| format!("{}: {}", r.reason.code(), r.detail);
    let file = read_library_bytes(Path::new(label), bytes).map_err(refused)?;
    // A shadow file, if one is needed, is opened and its name removed by `stage`: its
    // directory goes before the sandbox, which could not remove it.
    let scratch = tempfile::tempdir()
        .map_err(|e| format!("load_failed: the worker has no temporary directory: {e}"))?;
    let staged = loader::stage(&file, scratch.path(), sealed_only).map_err(refused)?;
    drop(scratch);
    let status = sandbox(staged.file()).map_err(|message| format!("load_failed: {message}"))?;
    // Sandboxed, so the watch thread is too; started before the library's constructors, so
    // one that blocks cannot outlive a host that dies meanwhile.
    follow_the_host().map_err(|e| format!("load_failed: the worker cannot watch its host: {e}"))?;
    let library = loader::open_staged(&file, &staged).map_err(refused)?;
    // The library is retained (never unloaded) by the loader, as in a host.
    Ok((library.creator(), status))
}

fn answer(result: Result<Vec<u8>, airlock_abi::abi::PluginError>, out: &mut Vec<u8>) -> ErrorCode {
    match result {
        Ok(bytes) => {
            out.extend_from_slice(&bytes);
            ErrorCode::OK
        }
        Err(e) => {
            out.extend_from_slice(e.message.as_bytes());
            e.code
        }
    }
}

fn not_loaded(out: &mut Vec<u8>) -> ErrorCode {
    out.extend_from_slice(b"the worker has no library or instance for this command");
    ErrorCode::HANDLER
}

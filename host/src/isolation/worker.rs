//! The worker process's side: the loop the `airlock-worker` executable runs. It reads commands
//! from the host on its standard input (one end of a Unix socket pair), runs stage 4 on the
//! library bytes the host checked, creates the instance and serves its entry points. The
//! context it gives the plugin forwards every host function over the channel, where the host
//! serves it with the plugin's real token: the worker holds no authority of its own.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use abi_stable::prefix_type::WithMetadata;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use airlock_abi::abi::{
    ContextToken, ErrorCode, HostContext, HostError, HostErrorCode, HostVtable, HostVtableRef,
    InvocationKind, LogLevel,
};
use parking_lot::Mutex;

use super::wire::{Channel, FromWorker, ToWorker};
use crate::library::file::read_library_bytes;
use crate::loader;

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

fn serve() -> io::Result<()> {
    // The limits first: nothing of the plugin runs without them.
    limits().map_err(io::Error::other)?;
    let socket = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut channel = Channel::new(socket)?;
    channel.accept()?;
    if CHANNEL.set(Mutex::new(channel)).is_err() {
        return Err(io::Error::other("the worker serves one host"));
    }
    let channel = CHANNEL
        .get()
        .ok_or_else(|| io::Error::other("the channel was not set"))?;
    let mut creator: Option<loader::Creator> = None;
    let mut instance: Option<loader::Instance> = None;
    let mut out = Vec::new();
    let mut loaded = false;
    loop {
        let read = {
            let mut channel = channel.lock();
            let read = channel.command(Command::owned);
            COMMAND.fetch_add(1, Ordering::Relaxed);
            SERVING.store(read.is_ok(), Ordering::Relaxed);
            read
        };
        let command = match read {
            Ok(command) => command,
            // The host is gone: nothing left to serve.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        out.clear();
        let code = match command {
            Command::Load { .. } if loaded => {
                out.extend_from_slice(b"load_failed: this worker has loaded its library already");
                ErrorCode::INIT
            }
            Command::Load {
                label,
                bytes,
                sealed_only,
            } => {
                loaded = true;
                match load(&label, bytes, sealed_only) {
                    Ok((library, status)) => {
                        creator = Some(library);
                        out.extend_from_slice(status.as_bytes());
                        ErrorCode::OK
                    }
                    Err(message) => {
                        out.extend_from_slice(message.as_bytes());
                        ErrorCode::INIT
                    }
                }
            }
            Command::Validate { config } => match &creator {
                Some(creator) => answer(creator.validate_config(&config), &mut out),
                None => not_loaded(&mut out),
            },
            Command::Create { token } => match &creator {
                Some(creator) => match creator.create(forwarding_context(token)) {
                    Ok(created) => {
                        instance = Some(created);
                        ErrorCode::OK
                    }
                    Err(e) => {
                        out.extend_from_slice(e.message.as_bytes());
                        e.code
                    }
                },
                None => not_loaded(&mut out),
            },
            Command::Call {
                kind,
                index,
                name,
                payload,
            } => match &instance {
                Some(instance) => {
                    instance.call(InvocationKind(kind), index, &name, &payload, &mut out)
                }
                None => not_loaded(&mut out),
            },
            Command::Destroy => {
                let code = match instance.take().map(loader::Instance::destroy) {
                    Some(Err(e)) => {
                        out.extend_from_slice(e.message.as_bytes());
                        e.code
                    }
                    _ => ErrorCode::OK,
                };
                done(channel, code, &mut out)?;
                return Ok(());
            }
            Command::Stray => {
                out.extend_from_slice(b"a reply arrived with no request waiting for it");
                ErrorCode::HANDLER
            }
        };
        done(channel, code, &mut out)?;
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

/// Sends the plugin's request and waits for the host's reply.
fn forward(request: &FromWorker) -> Result<Vec<u8>, HostError> {
    let failed = |message: String| HostError {
        code: HostErrorCode::INTERNAL,
        capability: RString::new(),
        message: RString::from(message),
    };
    let between_calls = || HostError {
        code: HostErrorCode::UNSUPPORTED,
        capability: RString::new(),
        message: RString::from(
            "the plugin runs in a worker process, where its context serves the call in \
             progress only: a request made between calls is refused",
        ),
    };
    let command = COMMAND.load(Ordering::Relaxed);
    if !SERVING.load(Ordering::Relaxed) {
        return Err(between_calls());
    }
    let channel = CHANNEL
        .get()
        .ok_or_else(|| failed("the worker has no channel".to_owned()))?;
    let mut channel = channel.lock();
    // Still serving the command it started in: a request from between two calls does not
    // slip into the next one.
    if !SERVING.load(Ordering::Relaxed) || COMMAND.load(Ordering::Relaxed) != command {
        return Err(between_calls());
    }
    channel
        .answer(request)
        .map_err(|e| failed(format!("the channel to the host broke: {e}")))?;
    let reply = channel
        .command(|command| match command {
            ToWorker::Reply { code: 0, body, .. } => Ok(body.to_vec()),
            ToWorker::Reply {
                code,
                capability,
                body,
            } => Err(HostError {
                code: HostErrorCode(code),
                capability: RString::from(capability),
                message: RString::from(String::from_utf8_lossy(body).into_owned()),
            }),
            _ => Err(failed(
                "the host sent a command while a reply was due".to_owned(),
            )),
        })
        .map_err(|e| failed(format!("the channel to the host broke: {e}")))?;
    reply
}

/// Runs a forwarding function with panics contained: nothing unwinds into the plugin.
fn contained<T>(f: impl FnOnce() -> Result<T, HostError>) -> RResult<T, HostError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(_) => RResult::RErr(HostError {
            code: HostErrorCode::INTERNAL,
            capability: RString::new(),
            message: RString::from("the worker panicked while forwarding a request"),
        }),
    }
}

extern "C" fn forward_log(
    _: ContextToken,
    level: LogLevel,
    message: RStr<'_>,
) -> RResult<(), HostError> {
    contained(|| {
        forward(&FromWorker::Log {
            level: level.0,
            message: message.as_rslice().as_slice().to_vec(),
        })
        .map(drop)
    })
}

extern "C" fn forward_config(_: ContextToken) -> RResult<RVec<u8>, HostError> {
    contained(|| forward(&FromWorker::Config).map(RVec::from))
}

extern "C" fn forward_request(
    _: ContextToken,
    service: RStr<'_>,
    operation: RStr<'_>,
    payload: RSlice<'_, u8>,
) -> RResult<RVec<u8>, HostError> {
    contained(|| {
        forward(&FromWorker::Request {
            service: service.as_rslice().as_slice().to_vec(),
            operation: operation.as_rslice().as_slice().to_vec(),
            payload: payload.as_slice().to_vec(),
        })
        .map(RVec::from)
    })
}

const FORWARDING: &WithMetadata<HostVtable> = &WithMetadata::new(HostVtable {
    log: forward_log,
    config: forward_config,
    request: forward_request,
});

/// The context the worker gives the plugin: its token, and functions that forward to the host.
fn forwarding_context(token: ContextToken) -> HostContext {
    HostContext {
        token,
        vtable: HostVtableRef(FORWARDING.static_as_prefix()),
    }
}

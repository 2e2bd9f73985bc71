//! Stage 4, load: one of the host's two rooms for `unsafe` (the other is the concurrent core,
//! `sync`, with the memory shared with a worker). Here: the
//! sealed copy, `dlopen` (its per-OS part in `unix.rs` and `windows.rs`), the layout checks,
//! and the module's call table ([`call_table`]).
//!
//! A library that passed stages 1–3 is copied to a fresh shadow path (a new name *and* a new
//! inode, or the dynamic linker would hand back a library it already has), opened with
//! `RTLD_NOW | RTLD_LOCAL`, checked by abi_stable's layout checker, and asked for its manifest
//! block, which must equal the one read from the file. Everything after construction is safe:
//! [`LoadedLibrary`] and [`Instance`] expose safe methods only.
//!
//! **Libraries are never unloaded.** What can point into a library (function pointers, vtables,
//! `&'static` data, thread-local destructors, threads the plugin started, and abi_stable's own
//! process-wide layout cache) cannot be enumerated, and unloading one that is still referenced
//! crashes the host. A loaded library is retained for the life of the process and counted in
//! [`retained`].
//!
//! Longer than 400 lines: this is the loader's room for `unsafe`, kept whole so that every
//! unsafe block sits next to the checks it relies on.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use abi_stable::abi_stability::abi_checking::check_layout_compatibility;
use abi_stable::library::{AbiHeader, AbiHeaderRef, LibHeader, LibraryError};
use abi_stable::std_types::{RResult, RSlice, RVec};
use abi_stable::type_layout::TypeLayout;
use abi_stable::StableAbi;
use airlock_abi::abi::{
    CallTable, ErrorCode, HostContext, InstanceHandle, Invocation, InvocationKind, PluginError,
    PluginModuleRef, LIB_HEADER_SYMBOL,
};

#[cfg(target_os = "linux")]
mod in_place;
#[cfg(not(target_os = "linux"))]
#[path = "no_in_place.rs"]
mod in_place;
#[cfg(target_os = "linux")]
mod mapped;
#[cfg(unix)]
#[path = "unix.rs"]
mod os;
#[cfg(windows)]
#[path = "windows.rs"]
mod os;

use os::copy_out;

use crate::error::{Refusal, RefusalReason};
use crate::library::file::{LibraryFile, Placement};

/// Opens `path` with `dlopen(RTLD_NOW | RTLD_LOCAL)` and never closes it.
#[cfg(unix)]
fn open(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: opening runs the library's initializers. In `load` the file passed every check
    // that can be made without running it (stages 1–3), and running its code is what loading
    // means from there on; `bare_dlopen` (benchmarks only) opens a file unchecked on purpose.
    // RTLD_NOW resolves every symbol now, so a missing one is refused here, not at first call.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

/// Opens `path` with `LoadLibrary` and never closes it.
#[cfg(windows)]
fn open(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: opening runs the library's initializers; the file passed every check that can be
    // made without running it (stages 1–3), and running its code is what loading means from
    // here on. Windows resolves imports at load time, so a missing one is refused here.
    unsafe { libloading::Library::new(path) }
}

static SHADOW_SEQUENCE: AtomicU64 = AtomicU64::new(0);
static RETAINED_COUNT: AtomicUsize = AtomicUsize::new(0);
static RETAINED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// How many libraries this process has loaded and retains, and their total file size.
pub fn retained() -> (usize, usize) {
    (
        RETAINED_COUNT.load(Ordering::Relaxed),
        RETAINED_BYTES.load(Ordering::Relaxed),
    )
}

/// A library loaded from a shadow copy, with its checked root module. Never unloaded.
pub(crate) struct LoadedLibrary {
    module: PluginModuleRef,
    /// Kept only so the handle is not closed; see the module documentation.
    _library: ManuallyDrop<libloading::Library>,
}

impl std::fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedLibrary").finish_non_exhaustive()
    }
}

/// Copies `file`'s checked bytes to a fresh, sealed in-memory file (unless stage 2 already made
/// it, [`seal`]; or, where the system has none, to a shadow path in `shadow_dir`), loads that
/// copy and checks it. With `sealed_only`
/// (the bytes are pinned or signed), the shadow-file fallback is refused: another process of the same user
/// can rewrite a shadow file between the copy and `dlopen`, so it cannot keep a pin's promise.
///
/// # Errors
///
/// `load_failed` if the copy cannot be made, was changed before it was sealed, cannot be
/// sealed while `sealed_only`, or the dynamic linker refuses it;
/// `layout_mismatch` if abi_stable's checks fail; `bad_manifest` if the library reports a
/// different manifest than the file holds.
pub(crate) fn load(
    file: &mut LibraryFile,
    shadow_dir: &Path,
    sealed_only: bool,
) -> Result<LoadedLibrary, Refusal> {
    if !file.in_place() && matches!(file.placement(), Placement::InPlace { .. }) {
        file.seal_instead(
            "checked by `pipeline::check`, which keeps the bytes it read rather than the file \
             open; loaded from those bytes"
                .to_owned(),
        );
    }
    if file.in_place() {
        match in_place::load(file) {
            in_place::Loaded::Yes(library) => return checked(file, library),
            in_place::Loaded::Refused(refusal) => return Err(refusal),
            in_place::Loaded::No(why) => file.seal_instead(why),
        }
    }
    if (file.bytes.is_empty() && file.sealed.is_none()) || file.bytes.is_mapped() {
        // Stage 2 kept only the descriptor, or the file mapped, for a load in place that did
        // not happen: the checked bytes are read again, and checked against their hash.
        in_place::reread(file)?;
    }
    let file = &*file;
    let id = &file.manifest.id;
    let refuse = |reason, detail: String| Refusal::new(&file.path, reason, detail).with_id(id);
    // A sealed in-memory copy where the system offers one; a shadow file otherwise (or if the
    // dynamic linker cannot map the in-memory copy, as under a no-exec policy for memfds).
    let library = match open_in_memory(file) {
        InMemory::Loaded(Ok(library)) => library,
        InMemory::Changed => return Err(changed(file)),
        InMemory::Loaded(Err(e)) if sealed_only => {
            return Err(refuse(
                RefusalReason::LoadFailed,
                format!("the dynamic linker refused it: {e}"),
            ))
        }
        InMemory::Unavailable(why) if sealed_only => return Err(no_sealed_memory(file, &why)),
        InMemory::Loaded(Err(_)) | InMemory::Unavailable(_) => {
            let shadow = Staged::shadow(file, shadow_dir)?;
            open(&shadow.path).map_err(|e| linker_refused(file, &e))?
        }
    };
    checked(file, library)
}

/// Where stage 4 opens a library from, made before anything of it runs: a sealed in-memory
/// copy, or (where the system has none, and the bytes were not pinned or signed) a shadow file
/// whose name is removed at once. Either is opened as `/proc/self/fd/<n>`. A worker stages the
/// library, sandboxes itself, and only then opens it ([`open_staged`]): the library's
/// constructors run inside the sandbox.
pub(crate) struct Staged {
    path: PathBuf,
    /// The copy, kept open until the library is mapped.
    copy: fs::File,
    /// Whether the copy is a file on a file system (a shadow file), not sealed memory.
    shadow: bool,
}

impl Staged {
    /// The shadow file a sandbox must let the dynamic linker read and map; `None` for the
    /// sealed copy, an anonymous file no path rule governs.
    pub(crate) fn file(&self) -> Option<&fs::File> {
        self.shadow.then_some(&self.copy)
    }

    fn new(copy: fs::File, shadow: bool) -> Self {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&copy);
        Self {
            path: PathBuf::from(fd_path(fd, SHADOW_SEQUENCE.fetch_add(1, Ordering::Relaxed))),
            copy,
            shadow,
        }
    }

    fn shadow(file: &LibraryFile, dir: &Path) -> Result<Self, Refusal> {
        let refuse = |e: std::io::Error| {
            Refusal::new(
                &file.path,
                RefusalReason::LoadFailed,
                format!("cannot write the shadow copy in {}: {e}", dir.display()),
            )
            .with_id(&file.manifest.id)
        };
        let path = write_shadow(file, dir).map_err(refuse)?;
        let opened = fs::File::open(&path);
        // The descriptor keeps the inode; without its name nothing is left behind if the
        // process is killed, and nothing else can open it.
        let _ = fs::remove_file(&path);
        Ok(Self::new(opened.map_err(refuse)?, true))
    }
}

/// Makes the copy stage 4 will open ([`Staged`]): a sealed in-memory copy of `file`'s checked
/// bytes; a shadow file in `shadow_dir` only where the system has no executable sealed memory
/// and `sealed_only` is false.
///
/// # Errors
///
/// `load_failed` if the copy changed before it was sealed, if no sealed copy can be made while
/// `sealed_only`, or if the shadow file cannot be written.
pub(crate) fn stage(
    file: &LibraryFile,
    shadow_dir: &Path,
    sealed_only: bool,
) -> Result<Staged, Refusal> {
    match in_memory(file) {
        Ok(memfd) => Ok(Staged::new(memfd, false)),
        Err(SealError::Changed) => Err(changed(file)),
        Err(SealError::Unavailable(why)) if sealed_only => Err(no_sealed_memory(file, &why)),
        Err(SealError::Unavailable(_)) => Staged::shadow(file, shadow_dir),
    }
}

/// Stage 4 on a staged copy: `dlopen` (the library's constructors run now), then the checks.
///
/// # Errors
///
/// As [`load`], for everything after the copy.
pub(crate) fn open_staged(file: &LibraryFile, staged: &Staged) -> Result<LoadedLibrary, Refusal> {
    let library = open(&staged.path).map_err(|e| linker_refused(file, &e))?;
    checked(file, library)
}

fn changed(file: &LibraryFile) -> Refusal {
    Refusal::new(
        &file.path,
        RefusalReason::LoadFailed,
        "its in-memory copy changed between writing and sealing (another process of this user \
         wrote to it); refused rather than load bytes that were not checked"
            .to_owned(),
    )
    .with_id(&file.manifest.id)
}

fn no_sealed_memory(file: &LibraryFile, why: &str) -> Refusal {
    Refusal::new(
        &file.path,
        RefusalReason::LoadFailed,
        format!(
            "its bytes are pinned or signed and cannot be loaded from sealed memory ({why}); a \
             shadow file could be rewritten by another process of this user before it is \
             loaded, so it is not used"
        ),
    )
    .with_id(&file.manifest.id)
}

fn linker_refused(file: &LibraryFile, error: &libloading::Error) -> Refusal {
    Refusal::new(
        &file.path,
        RefusalReason::LoadFailed,
        format!("the dynamic linker refused it: {error}"),
    )
    .with_id(&file.manifest.id)
}

/// The checks of stage 4 on a library just opened: its header and root module (abi_stable's
/// layout check), and the manifest block it reports against the file's.
fn checked(file: &LibraryFile, library: libloading::Library) -> Result<LoadedLibrary, Refusal> {
    let id = &file.manifest.id;
    let refuse = |reason, detail: String| Refusal::new(&file.path, reason, detail).with_id(id);
    RETAINED_COUNT.fetch_add(1, Ordering::Relaxed);
    RETAINED_BYTES.fetch_add(file.len(), Ordering::Relaxed);
    let library = ManuallyDrop::new(library);

    // SAFETY: the symbol `LIB_HEADER_SYMBOL` is, in a library built with `export_plugin!`, a
    // `static LibHeader`; the library passed stage 2, which found the manifest block that the
    // same macro emits. The pointer is only read after abi_stable has checked the `AbiHeader`
    // at its start (magic string and version) in `upgrade`. The library is never unloaded, so
    // the symbol stays valid for the life of the process.
    let header_ptr: *const LibHeader = unsafe {
        match library.get::<*const LibHeader>(nul_terminated(LIB_HEADER_SYMBOL).as_bytes()) {
            Ok(symbol) => *symbol,
            Err(e) => {
                return Err(refuse(
                    RefusalReason::LoadFailed,
                    format!("it does not export {LIB_HEADER_SYMBOL}: {e}"),
                ))
            }
        }
    };
    if header_ptr.is_null() {
        return Err(refuse(
            RefusalReason::LoadFailed,
            format!("{LIB_HEADER_SYMBOL} is null"),
        ));
    }
    // SAFETY: `AbiHeaderRef` is `#[repr(transparent)]` around `RRef<'static, AbiHeader>`, itself a
    // transparent non-null pointer. `LibHeader` is `#[repr(C)]` with an `AbiHeader` as its first
    // field, so a pointer to it is a pointer to that header; this is exactly how abi_stable reads
    // the header of its own exported symbol. The pointer is non-null (checked above) and
    // `'static` because the library is retained.
    let abi_header: AbiHeaderRef =
        unsafe { std::mem::transmute::<*const AbiHeader, AbiHeaderRef>(header_ptr.cast()) };
    let header: &'static LibHeader = abi_header.upgrade().map_err(|e| {
        refuse(
            RefusalReason::LayoutMismatch,
            format!("abi_stable refused its header: {e}"),
        )
    })?;
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|e| match e {
            LibraryError::AbiInstability(_) => refuse(
                RefusalReason::LayoutMismatch,
                format!("the root module's type layout differs from this host's: {e}"),
            ),
            LibraryError::IncompatibleVersionNumber { .. } | LibraryError::ParseVersionError(_) => {
                refuse(RefusalReason::AbiIncompatible, e.to_string())
            }
            other => refuse(
                RefusalReason::LoadFailed,
                format!("its root module failed to initialize: {other}"),
            ),
        })?;
    let reported = (module.manifest_block())();
    if reported.as_slice() != file.block_bytes.as_slice() {
        return Err(refuse(
            RefusalReason::BadManifest,
            "the loaded library reports a different manifest block than its file holds".to_owned(),
        ));
    }
    Ok(LoadedLibrary {
        module,
        _library: library,
    })
}

impl LoadedLibrary {
    /// A handle that creates instances, to be moved to another thread (the library itself stays).
    pub(crate) fn creator(&self) -> Creator {
        Creator::from_module(self.module)
    }
}

/// Creates instances of a loaded library's plugin; cheap to copy and send between threads.
#[derive(Clone, Copy)]
pub(crate) struct Creator {
    module: PluginModuleRef,
    /// The module's fast entry, if it has one (see [`call_table`]).
    table: Option<&'static CallTable>,
}

impl Creator {
    /// A creator for a checked module: a loaded library's, or one made from code (a built-in
    /// plugin, whose entry points are functions of this program). Asks the module once for its
    /// call table.
    pub(crate) fn from_module(module: PluginModuleRef) -> Self {
        Self {
            module,
            table: call_table(module),
        }
    }

    /// The library's `manifest_block` export: a raw `extern "C"` call into the library that
    /// does nothing but return a static slice. The benchmarks' baseline for a call.
    #[cfg(feature = "test-support")]
    pub(crate) fn raw_entry(&self) -> extern "C" fn() -> RSlice<'static, u8> {
        self.module.manifest_block()
    }

    /// Asks the plugin to validate a config (JSON) without an instance.
    pub(crate) fn validate_config(&self, config: &[u8]) -> Result<Vec<u8>, PluginError> {
        let query = self.module.query();
        let invocation = Invocation::new(InvocationKind::VALIDATE_CONFIG, 0, "", config);
        match query(invocation) {
            RResult::ROk(bytes) => Ok(bytes.as_slice().to_vec()),
            RResult::RErr(e) => Err(text_checked(e)),
        }
    }

    /// Creates a plugin instance with `context`.
    ///
    /// # Errors
    ///
    /// The plugin's error value (a panic in `create` comes back with code `PANICKED`).
    pub(crate) fn create(&self, context: HostContext) -> Result<Instance, PluginError> {
        match (self.module.create())(context) {
            RResult::ROk(handle) => Ok(Instance {
                module: self.module,
                call: self.table.map(|t| t.call),
                handle,
            }),
            RResult::RErr(e) => Err(text_checked(e)),
        }
    }
}

/// A live plugin instance. Calls are safe: the handle is only ever passed back to the module
/// that made it, and [`Instance::destroy`] consumes the instance, so no call can follow it.
pub(crate) struct Instance {
    module: PluginModuleRef,
    /// The module's [`CallTable::call`], for actions and hooks.
    call: Option<CallEntry>,
    handle: InstanceHandle,
}

type CallEntry =
    extern "C" fn(InstanceHandle, InvocationKind, u32, RSlice<'_, u8>, &mut RVec<u8>) -> ErrorCode;

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

// SAFETY: the instance behind the handle is a `Plugin`, and `export_plugin!` only accepts types
// that are `Send + Sync` (the trait requires both). Serial plugins are additionally serialized by
// the host; the handle itself is an opaque pointer the host never dereferences.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Instance {
    /// Runs one invocation, leaving the answer in `out` and returning [`ErrorCode::OK`], or
    /// leaving the failure's message there and returning its code. Actions and hooks take the
    /// module's call table when it has one: arguments in registers, the answer written into
    /// this buffer by this host's allocator, one code back and nothing else in memory.
    #[inline(always)]
    pub(crate) fn call(
        &self,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> ErrorCode {
        out.clear();
        match self.call {
            Some(call) if kind == InvocationKind::ACTION || kind == InvocationKind::HOOK => {
                let reused = std::mem::take(out);
                let mut buffer = if reused.capacity() == 0 {
                    RVec::new()
                } else {
                    RVec::from(reused)
                };
                let code = call(
                    self.handle,
                    kind,
                    index,
                    RSlice::from_slice(payload),
                    &mut buffer,
                );
                if buffer.capacity() == 0 {
                    // Nothing was written and nothing is allocated: a unit answer costs no
                    // conversion (and no indirect call to free nothing).
                    std::mem::forget(buffer);
                } else {
                    // Grown by this host's allocator (the plugin appends through the vector's
                    // own functions), so this takes the buffer back without a copy.
                    *out = buffer.into_vec();
                }
                code
            }
            _ => self.call_through_invoke(kind, index, name, payload, out),
        }
    }

    /// [`Instance::call`] through the module's `invoke`.
    #[cold]
    fn call_through_invoke(
        &self,
        kind: InvocationKind,
        index: u32,
        name: &str,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> ErrorCode {
        let invocation = Invocation::new(kind, index, name, payload);
        // Copy out and free the plugin's buffer at once: nothing of plugin memory is kept.
        let (code, bytes) = match (self.module.invoke())(self.handle, invocation) {
            RResult::ROk(bytes) => (ErrorCode::OK, bytes),
            RResult::RErr(e) => (e.code, e.message.into_bytes()),
        };
        out.extend_from_slice(&bytes);
        code
    }

    /// Tears the instance down and frees it.
    pub(crate) fn destroy(self) -> Result<(), PluginError> {
        (self.module.destroy())(self.handle)
            .into_result()
            .map_err(text_checked)
    }
}

/// Asks `module` where its [`CallTable`] is ([`InvocationKind::CALL_TABLE`]) and checks the
/// table's type layout with abi_stable's checker; `None` (calls go through `invoke`) if the
/// module has none or its table does not have this host's layout.
fn call_table(module: PluginModuleRef) -> Option<&'static CallTable> {
    let invocation = Invocation::new(InvocationKind::CALL_TABLE, 0, "", &[]);
    let RResult::ROk(answer) = (module.query())(invocation) else {
        return None;
    };
    let address = |at: usize| -> Option<usize> {
        let bytes = answer.as_slice().get(at..at + 8)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(bytes)).ok()
    };
    let (table, layout) = (address(0)?, address(8)?);
    if answer.len() != 16
        || table == 0
        || layout == 0
        || table % std::mem::align_of::<CallTable>() != 0
        || layout % std::mem::align_of::<TypeLayout>() != 0
    {
        tracing::warn!("a plugin answered CALL_TABLE with malformed addresses; calls use invoke");
        return None;
    }
    // SAFETY: the module answers `CALL_TABLE` with the address of the `&'static TypeLayout` of
    // the `CallTable` type it was compiled with (`export_plugin!`'s `query`; airlock-abi is
    // the only implementation, like every other entry of the module). It lives in the module's
    // library, which is never unloaded, or in this program (built-in plugins).
    let layout: &'static TypeLayout = unsafe { &*(layout as *const TypeLayout) };
    if let Err(e) = check_layout_compatibility(<CallTable as StableAbi>::LAYOUT, layout) {
        tracing::warn!("a plugin's call table has another layout ({e}); calls use invoke");
        return None;
    }
    // SAFETY: as above, `table` is the address of the module's `&'static CallTable`, a type
    // whose layout the checker just found equal to this host's.
    Some(unsafe { &*(table as *const CallTable) })
}

/// A plugin's error with its message checked: the plugin's side of the boundary promises
/// UTF-8, but nothing makes a foreign library keep the promise, and a `&str` over other bytes
/// is undefined behaviour. Invalid sequences become U+FFFD.
fn text_checked(error: PluginError) -> PluginError {
    match std::str::from_utf8(error.message.as_bytes()) {
        Ok(_) => error,
        Err(_) => PluginError::new(
            error.code,
            String::from_utf8_lossy(error.message.as_bytes()).into_owned(),
        ),
    }
}

fn nul_terminated(name: &str) -> String {
    format!("{name}\0")
}

/// What became of loading from sealed memory.
enum InMemory {
    /// The dynamic linker's answer on the sealed copy.
    Loaded(Result<libloading::Library, libloading::Error>),
    /// The copy's bytes were not the checked bytes once sealed.
    Changed,
    /// The system offers no sealed memory here (why, for the refusal under a lock).
    Unavailable(String),
}

/// Makes the sealed in-memory copy of a file stage 2 has just read, while its bytes are still
/// in the processor's cache, and keeps it in place of the bytes: stage 4 then only opens it, and
/// startup never holds every library's bytes at once. Where the system has no sealed memory, or
/// the copy changed before it was sealed, the bytes stay and stage 4 tries again from them.
/// Each copy is a descriptor until its library is loaded, so at most a quarter of the process's
/// descriptor limit are held this way; past that, the bytes stay too.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn seal(file: &mut LibraryFile) {
    if file.in_place() {
        match in_place::keep(file) {
            Ok(()) => return,
            Err(why) => file.seal_instead(why),
        }
    }
    if file.bytes.is_mapped() && in_place::reread(file).is_err() {
        // Rewritten since it was hashed: stage 4 refuses it (it reads it again).
        file.bytes = crate::library::file::Bytes::Released;
        return;
    }
    // From here on the bytes are in memory: the descriptor is not needed any more.
    file.close_descriptor();
    if file.bytes.is_empty()
        || file.sealed.is_some()
        || crate::library::file::SealedCopy::open() >= sealed_budget()
    {
        return;
    }
    if let Ok(memfd) = sealed_copy(
        &memfd_name(file),
        loaded_part(file),
        file.len() as u64,
        |_| {},
    ) {
        file.keep_sealed(memfd);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn seal(_: &mut LibraryFile) {}

/// How stage 2 maps a library that may be loaded in place: only on Linux, where libraries are.
#[cfg(target_os = "linux")]
pub(crate) const MAPPER: Option<crate::library::file::Mapper> = Some(mapped::map_library);
/// How stage 2 maps a library that may be loaded in place: never here.
#[cfg(not(target_os = "linux"))]
pub(crate) const MAPPER: Option<crate::library::file::Mapper> = None;

/// Reads the checked bytes of a library stage 2 mapped (or kept only the descriptor of) into
/// memory, checked against their hash: for a worker, or a sealed copy after all.
///
/// # Errors
///
/// `load_failed` if the file cannot be read again or was rewritten since it was hashed.
pub(crate) fn reread(file: &mut LibraryFile) -> Result<(), Refusal> {
    in_place::reread(file)
}

/// How many sealed copies stage 2 may hold open: a quarter of the soft limit on descriptors,
/// so that the rest of the host (and `dlopen`, which opens each copy) never runs out.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sealed_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through the pointer, which points to a local
        // of that type that lives across the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return 0;
        }
        usize::try_from(limit.rlim_cur).map_or(usize::MAX, |cur| cur / 4)
    })
}

/// The memfd's name, which `/proc/<pid>/maps` shows: `airlock:<id>`.
fn memfd_name(file: &LibraryFile) -> String {
    format!("airlock:{}", file.manifest.id)
}

/// What the dynamic linker maps: the checked bytes up to the end of the last loadable segment.
/// Only this is written into the sealed copy; the rest (debug info, symbol tables) stays a hole,
/// so a retained generation holds in memory only its loadable bytes.
fn loaded_part(file: &LibraryFile) -> &[u8] {
    let loaded = usize::try_from(file.loadable_end)
        .ok()
        .filter(|&end| end > 0)
        .map_or(file.bytes.len(), |end| end.min(file.bytes.len()));
    &file.bytes[..loaded]
}

/// A sealed in-memory copy of the checked bytes, made now (a worker's stage 4).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn in_memory(file: &LibraryFile) -> Result<fs::File, SealError> {
    sealed_copy(
        &memfd_name(file),
        loaded_part(file),
        file.len() as u64,
        |_| {},
    )
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn in_memory(_: &LibraryFile) -> Result<fs::File, SealError> {
    Err(SealError::Unavailable(
        "this system has no sealed in-memory files".to_owned(),
    ))
}

/// Loads the checked bytes from a sealed memfd: a new inode no one else can name, whose content
/// cannot change after the seals (the bytes checked are the bytes loaded, whatever else runs
/// as this user), and no file system work. The copy stage 2 made if there is one ([`seal`]),
/// else one made here from the bytes.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_in_memory(file: &LibraryFile) -> InMemory {
    use std::os::fd::AsRawFd;

    let made;
    let memfd = match &file.sealed {
        Some(sealed) => sealed.file(),
        None => {
            made = match sealed_copy(
                &memfd_name(file),
                loaded_part(file),
                file.len() as u64,
                |_| {},
            ) {
                Ok(memfd) => memfd,
                Err(SealError::Changed) => return InMemory::Changed,
                Err(SealError::Unavailable(why)) => return InMemory::Unavailable(why),
            };
            &made
        }
    };
    let path = PathBuf::from(fd_path(
        memfd.as_raw_fd(),
        SHADOW_SEQUENCE.fetch_add(1, Ordering::Relaxed),
    ));
    if fs::metadata(&path).is_err() {
        return InMemory::Unavailable("no /proc/self/fd".to_owned());
    }
    // The mapping keeps the memory alive; the descriptor is closed when this returns (a copy
    // made here) or when the loaded file's bytes are released (the copy stage 2 made).
    InMemory::Loaded(open(&path))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn open_in_memory(_: &LibraryFile) -> InMemory {
    InMemory::Unavailable("this system has no sealed in-memory files".to_owned())
}

/// Why a sealed copy could not be made.
#[derive(Debug, PartialEq, Eq)]
enum SealError {
    /// Once sealed, its content was not `bytes` followed by zeros.
    Changed,
    /// The system refused a step (the step and its error).
    Unavailable(String),
}

/// A memfd holding `bytes`, `len` long (zeros after `bytes`), sealed against writing,
/// shrinking, growing and further sealing, and verified after sealing. Until the seals are on,
/// another process of the same user can open `/proc/<pid>/fd/<n>` and write to it, so the
/// content is compared with `bytes` once nothing can change it any more. `before_seal` runs
/// just before sealing (the window such a writer has; tests write there).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sealed_copy(
    name: &str,
    bytes: &[u8],
    len: u64,
    before_seal: impl FnOnce(&fs::File),
) -> Result<fs::File, SealError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;

    let unavailable =
        |step: &str| SealError::Unavailable(format!("{step}: {}", std::io::Error::last_os_error()));
    let name = std::ffi::CString::new(name)
        .map_err(|_| SealError::Unavailable("the name holds a NUL byte".to_owned()))?;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; memfd_create reads it
    // and returns a new descriptor or -1.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 6.3 do not know MFD_EXEC (their memfds are executable anyway).
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        // EACCES: the system refuses executable memfds (`vm.memfd_noexec = 2`); a copy made
        // without MFD_EXEC could not be mapped executable either.
        return Err(unavailable("memfd_create (executable)"));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
    let memfd = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    (&memfd)
        .write_all(bytes)
        .map_err(|e| SealError::Unavailable(format!("writing the copy: {e}")))?;
    memfd
        .set_len(len)
        .map_err(|e| SealError::Unavailable(format!("sizing the copy: {e}")))?;
    before_seal(&memfd);
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS takes an integer argument; the descriptor is open. It fails (EBUSY)
    // while anyone holds a writable shared mapping of the file.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(unavailable("sealing"));
    }
    // Nothing can change the content from here on: compare it with what was checked.
    let size = memfd
        .metadata()
        .map_err(|e| SealError::Unavailable(format!("reading the copy's size: {e}")))?
        .len();
    if size != len {
        return Err(SealError::Changed);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < len {
        if offset >= bytes.len() as u64 {
            // Past the written bytes the copy is a hole, which has no pages: only pages someone
            // wrote there need reading (and must hold zeros).
            match next_data(&memfd, offset) {
                Some(data) if data < len => offset = data.max(offset),
                _ => break,
            }
        }
        let want = usize::try_from((len - offset).min(chunk.len() as u64)).unwrap_or(chunk.len());
        memfd
            .read_exact_at(&mut chunk[..want], offset)
            .map_err(|e| SealError::Unavailable(format!("reading the copy back: {e}")))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let expected = bytes.get(start..).unwrap_or_default();
        let expected = &expected[..want.min(expected.len())];
        let (head, rest) = chunk[..want].split_at(expected.len());
        // An `or` over every byte, not `all` (which stops early and is not vectorized).
        let same = head == expected && rest.iter().fold(0u8, |acc, &b| acc | b) == 0;
        if !same {
            return Err(SealError::Changed);
        }
        offset += want as u64;
    }
    Ok(memfd)
}

/// Where the next data (a page someone wrote) at or after `offset` is, `None` if only a hole
/// follows; `Some(offset)` (read it all) if the system cannot say.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn next_data(file: &fs::File, offset: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let at = libc::off_t::try_from(offset).ok()?;
    // SAFETY: lseek takes a descriptor and integers and touches no memory of this process; the
    // descriptor is open for as long as `file` is borrowed.
    let found = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
    if found >= 0 {
        return u64::try_from(found).ok();
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENXIO) => None,
        _ => Some(offset),
    }
}

/// `/proc/self/fd/<fd>`, spelled uniquely for `seq`. The dynamic linker hands back a library
/// already loaded under the same name, and descriptor numbers are reused, so the name carries
/// `seq` in binary as `./` (0) and `//` (1) path components, which path resolution ignores.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn fd_path(fd: i32, seq: u64) -> String {
    let mut path = String::from("/proc/self/fd/");
    let mut rest = seq;
    loop {
        path.push_str(if rest & 1 == 1 { "//" } else { "./" });
        rest >>= 1;
        if rest == 0 {
            break;
        }
    }
    path.push_str(&fd.to_string());
    path
}

fn write_shadow(file: &LibraryFile, dir: &Path) -> std::io::Result<PathBuf> {
    let seq = SHADOW_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "{}-{}-{seq}.{}",
        file.manifest.id,
        std::process::id(),
        std::env::consts::DLL_EXTENSION
    );
    let path = dir.join(name);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o700);
    }
    let mut out = options.open(&path)?;
    match &file.sealed {
        // Stage 2 released the bytes for a sealed copy the dynamic linker then refused (a
        // system that does not map memfds executable): the copy holds the checked bytes.
        Some(sealed) if file.bytes.is_empty() => {
            copy_out(sealed.file(), file.len() as u64, &mut out)?;
        }
        _ => out.write_all(&file.bytes)?,
    }
    out.flush()?;
    Ok(path)
}

/// Opens `path` with `dlopen(RTLD_NOW | RTLD_LOCAL)` and never closes it, as a host without
/// Airlock would load a plugin: the startup benchmark's baseline (feature `test-support`), with
/// none of Airlock's checks and no copy. Never part of a product: it runs a library's
/// initializers unchecked.
///
/// # Errors
///
/// The dynamic linker's message if it refuses the file.
#[cfg(all(unix, feature = "test-support"))]
pub fn bare_dlopen(path: &Path) -> Result<(), String> {
    open(path).map(std::mem::forget).map_err(|e| e.to_string())
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    /// What another process of the same user can do before the seals: open the memfd through
    /// /proc and write to it.
    fn write_through_proc(memfd: &fs::File, at: u64, bytes: &[u8]) {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let other = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for writing");
        other.write_all_at(bytes, at).expect("write");
    }

    #[test]
    fn a_sealed_copy_holds_exactly_the_checked_bytes() {
        use std::os::unix::fs::FileExt;
        let bytes = b"checked library bytes";
        let memfd = sealed_copy("airlock:test", bytes, 64, |_| {}).expect("sealed");
        let mut back = vec![1u8; 64];
        memfd.read_exact_at(&mut back, 0).expect("read");
        assert_eq!(&back[..bytes.len()], bytes);
        assert!(back[bytes.len()..].iter().all(|&b| b == 0));
        // Sealed: no one can write any more.
        use std::os::fd::AsRawFd;
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let reopened = OpenOptions::new().write(true).open(&path).expect("open");
        assert!(
            reopened.write_all_at(b"x", 0).is_err(),
            "a sealed copy took a write"
        );
    }

    #[test]
    fn a_copy_changed_before_sealing_is_refused() {
        let bytes = b"checked library bytes";
        let changed = sealed_copy("airlock:test", bytes, 64, |memfd| {
            write_through_proc(memfd, 0, b"CHANGED");
        });
        assert_eq!(changed.err(), Some(SealError::Changed));
        // The hole after the loadable bytes must stay zeros, too.
        let in_hole = sealed_copy("airlock:test", bytes, 64, |memfd| {
            write_through_proc(memfd, 40, b"\xcc\xcc");
        });
        assert_eq!(in_hole.err(), Some(SealError::Changed));
        // Pages past the written ones are a hole and not read back: a write there is found
        // all the same, wherever it lands.
        for at in [4096, 200_000, 999_999] {
            let far = sealed_copy("airlock:test", bytes, 1_000_000, |memfd| {
                write_through_proc(memfd, at, b"\x01");
            });
            assert_eq!(far.err(), Some(SealError::Changed), "a write at {at}");
        }
        // Zeros written into the hole change nothing that is loaded.
        let zeros = sealed_copy("airlock:test", bytes, 1_000_000, |memfd| {
            write_through_proc(memfd, 500_000, &[0; 10]);
        });
        assert!(zeros.is_ok());
    }

    #[test]
    fn a_shadow_written_from_a_sealed_copy_holds_the_checked_bytes_then_zeros() {
        let bytes = b"checked library bytes";
        let memfd = sealed_copy("airlock:test", bytes, 100_000, |_| {}).expect("sealed");
        // Wherever the descriptor's position is, the copy starts at the first byte.
        let mut out = Vec::new();
        copy_out(&memfd, 100_000, &mut out).expect("copied");
        assert_eq!(out.len(), 100_000);
        assert_eq!(&out[..bytes.len()], bytes);
        assert!(out[bytes.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn descriptor_paths_are_unique_per_sequence_and_name_the_descriptor() {
        let paths: std::collections::HashSet<String> =
            (0..4096).map(|seq| fd_path(0, seq)).collect();
        assert_eq!(paths.len(), 4096);
        let own = fs::File::open("/proc/self/exe").expect("open");
        use std::os::fd::AsRawFd;
        let want = fs::metadata("/proc/self/exe").expect("meta");
        for seq in [0, 1, 2, 1023, u64::MAX] {
            let path = fd_path(own.as_raw_fd(), seq);
            let got = fs::metadata(&path).expect(&path);
            use std::os::unix::fs::MetadataExt;
            assert_eq!((got.dev(), got.ino()), (want.dev(), want.ino()), "{path}");
        }
    }
}

/// The call table's checks, on modules made from code.
#[cfg(test)]
mod call_table_tests {
    use abi_stable::prefix_type::PrefixTypeTrait as _;
    use abi_stable::std_types::{RSlice, RVec};
    use airlock_abi::abi::{
        ContextToken, ErrorCode, HostContext, InstanceHandle, PluginError, PluginModule,
        PluginModuleRef,
    };

    use super::*;

    extern "C" fn call(
        _: InstanceHandle,
        _: InvocationKind,
        _: u32,
        _: RSlice<'_, u8>,
        _: &mut RVec<u8>,
    ) -> ErrorCode {
        ErrorCode::OK
    }

    static TABLE: CallTable = CallTable { call };

    extern "C" fn answers_table(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        let layout = <CallTable as StableAbi>::LAYOUT;
        RResult::ROk(airlock_abi::__private::call_table_answer(
            std::ptr::from_ref(&TABLE) as usize,
            std::ptr::from_ref(layout) as usize,
        ))
    }

    extern "C" fn answers_another_layout(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        let layout = <u64 as StableAbi>::LAYOUT;
        RResult::ROk(airlock_abi::__private::call_table_answer(
            std::ptr::from_ref(&TABLE) as usize,
            std::ptr::from_ref(layout) as usize,
        ))
    }

    extern "C" fn answers_unsupported(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        RResult::RErr(PluginError::new(ErrorCode::UNSUPPORTED, "no"))
    }

    extern "C" fn answers_garbage(_: Invocation<'_>) -> RResult<RVec<u8>, PluginError> {
        RResult::ROk(airlock_abi::__private::call_table_answer(0, 3))
    }

    extern "C" fn no_block() -> RSlice<'static, u8> {
        RSlice::from_slice(&[])
    }

    extern "C" fn no_create(_: HostContext) -> RResult<InstanceHandle, PluginError> {
        RResult::RErr(PluginError::new(ErrorCode::INIT, "not here"))
    }

    extern "C" fn no_invoke(
        _: InstanceHandle,
        _: Invocation<'_>,
    ) -> RResult<RVec<u8>, PluginError> {
        RResult::RErr(PluginError::new(ErrorCode::UNSUPPORTED, "not here"))
    }

    extern "C" fn no_destroy(_: InstanceHandle) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn module(
        query: extern "C" fn(Invocation<'_>) -> RResult<RVec<u8>, PluginError>,
    ) -> PluginModuleRef {
        PluginModule {
            manifest_block: no_block,
            create: no_create,
            invoke: no_invoke,
            destroy: no_destroy,
            query,
        }
        .leak_into_prefix()
    }

    extern "C" fn create_one(_: HostContext) -> RResult<InstanceHandle, PluginError> {
        RResult::ROk(InstanceHandle(std::ptr::null_mut()))
    }

    extern "C" fn invoke_answers(
        _: InstanceHandle,
        invocation: Invocation<'_>,
    ) -> RResult<RVec<u8>, PluginError> {
        if invocation.payload.as_slice() == b"fail" {
            return RResult::RErr(PluginError::new(ErrorCode::DOMAIN, "as asked"));
        }
        let mut answer = RVec::new();
        answer.extend_from_copy_slice(b"through invoke:");
        answer.extend_from_copy_slice(invocation.payload.as_slice());
        RResult::ROk(answer)
    }

    #[test]
    fn without_a_table_actions_go_through_invoke_with_the_same_answers() {
        let module = PluginModule {
            manifest_block: no_block,
            create: create_one,
            invoke: invoke_answers,
            destroy: no_destroy,
            query: answers_unsupported,
        }
        .leak_into_prefix();
        let creator = Creator::from_module(module);
        let context = HostContext {
            token: ContextToken {
                slot: 0,
                generation: 0,
            },
            vtable: airlock_abi::__private::idle_vtable(),
        };
        let instance = creator.create(context).expect("created");
        let mut out = b"stale".to_vec();
        let code = instance.call(InvocationKind::ACTION, 0, "a", b"x", &mut out);
        assert_eq!(
            (code, out.as_slice()),
            (ErrorCode::OK, &b"through invoke:x"[..])
        );
        let code = instance.call(InvocationKind::ACTION, 0, "a", b"fail", &mut out);
        assert_eq!(
            (code, out.as_slice()),
            (ErrorCode::DOMAIN, &b"as asked"[..])
        );
        instance.destroy().expect("destroyed");
    }

    #[test]
    fn a_table_with_this_hosts_layout_is_used() {
        let table = call_table(module(answers_table)).expect("found");
        assert!(std::ptr::eq(table, &TABLE));
    }

    #[test]
    fn a_table_whose_layout_differs_is_not_used() {
        assert!(call_table(module(answers_another_layout)).is_none());
    }

    #[test]
    fn a_module_without_a_table_or_with_a_malformed_answer_is_called_through_invoke() {
        assert!(call_table(module(answers_unsupported)).is_none());
        assert!(call_table(module(answers_garbage)).is_none());
    }
}

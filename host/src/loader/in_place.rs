//! Stage 4 in place (Linux): the dynamic linker maps the very descriptor stage 2 examined
//! (`fstat`) and hashed, as `/proc/self/fd/<n>`, so the bytes loaded are the bytes checked with
//! no copy. Only for a library that [`crate::library::permissions::in_place`] found that no
//! user but root and the host's own can change, and never twice for one inode: the dynamic
//! linker goes by device and inode, and would hand back the library it already has (its code
//! and its statics) instead of loading a new one.

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::error::{Refusal, RefusalReason};
use crate::library::file::{LibraryFile, SealedCopy};

/// The inodes (device, inode) this process has loaded in place. Libraries are never unloaded,
/// so an inode once here is mapped for the life of the process (and its number is never reused).
static LOADED: Mutex<BTreeSet<(u64, u64)>> = Mutex::new(BTreeSet::new());

const ALREADY: &str = "this process already has this file (the same inode) loaded, and the \
                       dynamic linker would hand back that library and its statics";

/// What became of a load in place.
pub(super) enum Loaded {
    /// Mapped from the descriptor; stage 4's checks follow.
    Yes(libloading::Library),
    /// The dynamic linker refused the file.
    Refused(Refusal),
    /// Not in place after all, for this reason: load a sealed copy.
    No(String),
}

/// Stage 2 for a library that may be loaded in place: keeps only its descriptor (the bytes
/// were hashed and checked), unless this process already has its inode loaded or startup
/// holds too many descriptors already.
pub(super) fn keep(file: &mut LibraryFile) -> Result<(), String> {
    let Some(inode) = file.descriptor.as_ref().map(|d| d.inode) else {
        return Err("its descriptor was not kept".to_owned());
    };
    if LOADED.lock().contains(&inode) {
        return Err(ALREADY.to_owned());
    }
    if SealedCopy::open() > super::sealed_budget() {
        return Err(
            "more libraries are being loaded at once than the budget of open descriptors (a \
             quarter of the process's limit) allows"
                .to_owned(),
        );
    }
    file.keep_descriptor_only();
    Ok(())
}

/// `dlopen` of the descriptor stage 2 kept, unless this process already has its inode loaded.
pub(super) fn load(file: &mut LibraryFile) -> Loaded {
    // The identity, from the mapping of the descriptor about to be loaded, before any of its
    // code runs (and while another thread may hold the dynamic linker's lock).
    file.identify();
    let file = &*file;
    let Some(descriptor) = &file.descriptor else {
        return Loaded::No("its descriptor was not kept".to_owned());
    };
    if !LOADED.lock().insert(descriptor.inode) {
        return Loaded::No(ALREADY.to_owned());
    }
    let path = super::fd_path(
        descriptor.file.as_raw_fd(),
        super::SHADOW_SEQUENCE.fetch_add(1, Ordering::Relaxed),
    );
    match super::open(Path::new(&path)) {
        Err(e) => {
            LOADED.lock().remove(&descriptor.inode);
            Loaded::Refused(super::linker_refused(file, &e))
        }
        Ok(library) if fresh(&library, &path) => Loaded::Yes(library),
        Ok(library) => {
            // Another library of this process already is this inode (loaded by other means
            // than this host). Its handle is kept, never closed: closing would drop a reference
            // that is not ours.
            std::mem::forget(library);
            Loaded::No(
                "the dynamic linker already had this file (the same inode) loaded, by other \
                 means than this host, and handed back that library"
                    .to_owned(),
            )
        }
    }
}

/// Whether `library` is the one just opened as `path`, not one the dynamic linker already had
/// under another name (which it hands back for the same device and inode): the name it records
/// for the object holding the library's header is the unique `path`.
fn fresh(library: &libloading::Library, path: &str) -> bool {
    let name = super::nul_terminated(airlock_abi::abi::LIB_HEADER_SYMBOL);
    // SAFETY: only the symbol's address is read (`Symbol<*const u8>` is the address itself); it
    // is never dereferenced here. The library stays loaded (never unloaded).
    let Ok(address) = (unsafe { library.get::<*const u8>(name.as_bytes()) }).map(|s| *s) else {
        // No header: stage 4's checks refuse it, whichever object it is.
        return true;
    };
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr reads the dynamic linker's tables for `address` and writes one `Dl_info`
    // through the pointer, which points to a local of that type that outlives the call.
    if unsafe { libc::dladdr(address.cast(), &mut info) } == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: `dli_fname` is non-null (checked) and points to the NUL-terminated name the
    // dynamic linker keeps for the loaded object, which is never unloaded.
    let loaded_as = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    loaded_as.to_bytes() == path.as_bytes()
}

/// Reads the checked bytes back from the descriptor stage 2 kept, for a sealed copy after all,
/// and checks them against the identity stage 2 computed.
///
/// # Errors
///
/// `load_failed` if there is no descriptor, it cannot be read, or its bytes are not the ones
/// checked (the file was rewritten since).
pub(super) fn reread(file: &mut LibraryFile) -> Result<(), Refusal> {
    file.identify();
    let refuse = |detail: String| {
        Refusal::new(&file.path, RefusalReason::LoadFailed, detail).with_id(&file.manifest.id)
    };
    let Some(descriptor) = file.descriptor.clone() else {
        return Err(refuse(
            "its checked bytes are no longer held; check it again".to_owned(),
        ));
    };
    let mut bytes = vec![0u8; file.len()];
    descriptor
        .file
        .read_exact_at(&mut bytes, 0)
        .map_err(|e| refuse(format!("cannot read it again for a sealed copy: {e}")))?;
    if blake3::hash(&bytes).to_hex().as_str() != file.blake3 {
        return Err(refuse(
            "it was rewritten after it was checked (its bytes no longer have the hash checked); \
             refused rather than load bytes that were not checked"
                .to_owned(),
        ));
    }
    file.bytes = crate::library::file::Bytes::Owned(bytes);
    Ok(())
}

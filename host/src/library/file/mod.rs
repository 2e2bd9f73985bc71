//! Stage 2, read without running: the library file is read into memory once, checked for
//! structure with the `object` crate, and its manifest block parsed. Nothing of the library
//! executes here; these bytes are the ones hashed (BLAKE3), checked and later copied into the
//! sealed in-memory copy (or shadow file) that the dynamic linker opens.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use airlock_abi::__private::builtin_module;
use airlock_abi::abi::{ManifestBlock, PluginModuleRef, BUILD_PANIC, BUILD_RUSTC, BUILD_TARGET};
use airlock_abi::manifest::Manifest;
use airlock_abi::{Builtin, ABI_VERSION};
use sha2::{Digest, Sha256};

use crate::error::{Refusal, RefusalReason};

mod placement;
mod resources;
mod structure;

pub use placement::Placement;
pub(crate) use placement::{Bytes, Descriptor, FileMapping, Mapper};
pub use resources::Resource;
use structure::check_object;
pub(crate) use structure::Platforms;

/// What reports show as the "file" of a built-in plugin, followed by its id.
pub const BUILTIN_PATH: &str = "builtin:";

/// The default cap on a library's size; larger files are refused without being read.
pub const DEFAULT_MAX_LIBRARY_SIZE: u64 = 256 * 1024 * 1024;

/// A library file that passed stage 2: structurally whole, with a well-formed manifest.
#[derive(Debug, Clone)]
pub struct LibraryFile {
    /// The file as found in the plugin directory.
    pub path: PathBuf,
    /// The file's bytes, exactly as checked (and later loaded), until the sealed copy is made
    /// or the library is loaded.
    pub(crate) bytes: Bytes,
    /// The sealed in-memory copy of the checked bytes that the dynamic linker will open, if
    /// stage 2 made it right after reading (`loader::seal`, at startup); the bytes are then
    /// released, so startup never holds every library's bytes at once.
    pub(crate) sealed: Option<Arc<SealedCopy>>,
    /// The file's size in bytes.
    len: usize,
    /// BLAKE3 of `bytes`, lower-case hex: the library's identity in reports, on reload and in
    /// pins. Empty for a built-in plugin, and, for a library stage 2 mapped to load in place,
    /// until it is first needed (stage 4 computes it before `dlopen` at the latest).
    pub blake3: String,
    /// SHA-256 of `bytes`, lower-case hex, computed only when a pin asks for it (see
    /// [`LibraryFile::sha256`]).
    sha256: OnceLock<String>,
    /// The raw manifest block bytes.
    pub(crate) block_bytes: Vec<u8>,
    /// Where the last loadable segment ends in the file: what the dynamic linker maps.
    pub(crate) loadable_end: u64,
    /// The parsed block: provenance and manifest text.
    pub block: ManifestBlock,
    /// The validated manifest.
    pub manifest: Manifest,
    /// A library file, or a plugin compiled into the host program.
    pub(crate) origin: Origin,
    /// What stage 2 found of its publisher's signature, checked on the bytes it read.
    pub signature: crate::library::signature::SignatureStatus,
    /// The signature's text, as read.
    signature_text: Option<String>,
    /// The files it ships inside the library, checked in stage 2 and kept: the host program
    /// reads them from here, never from the file again.
    resources: Vec<Resource>,
    /// The file as stage 2 opened, examined and read it, kept when it may be loaded in place:
    /// the dynamic linker then maps this very descriptor.
    pub(crate) descriptor: Option<Arc<Descriptor>>,
    /// Where stage 4 maps the library from (or would), and why.
    placement: Placement,
}

/// How many sealed copies and descriptors of libraries to be loaded in place stage 2 holds open
/// right now (each is a file descriptor until its library is loaded or refused).
static OPEN_SEALED: AtomicUsize = AtomicUsize::new(0);

/// A sealed in-memory copy that stage 2 made and stage 4 will open, counted while it is open
/// so that startup can keep within a budget of file descriptors (`loader::seal`).
#[derive(Debug)]
pub(crate) struct SealedCopy(File);

impl SealedCopy {
    fn new(file: File) -> Self {
        OPEN_SEALED.fetch_add(1, Ordering::Relaxed);
        Self(file)
    }

    /// The memfd.
    pub(crate) fn file(&self) -> &File {
        &self.0
    }

    /// How many are open in this process.
    pub(crate) fn open() -> usize {
        OPEN_SEALED.load(Ordering::Relaxed)
    }
}

impl Drop for SealedCopy {
    fn drop(&mut self) {
        OPEN_SEALED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a plugin's code comes from: the seam the load pipeline branches on once.
#[derive(Clone, Copy)]
pub(crate) enum Origin {
    /// A library file: stages 1–5, `dlopen` of the checked bytes.
    File,
    /// Compiled into the host program (`HostBuilder::builtin`): no file, so stages 1–2 and
    /// hashing do not apply; the module's entry points are the host's own code.
    Builtin(PluginModuleRef),
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File => "File",
            Self::Builtin(_) => "Builtin",
        })
    }
}

impl LibraryFile {
    /// Checks the publisher's signature beside the file on the bytes read, with the keys
    /// `trust` holds (name → minisign public key), and keeps what it found in
    /// [`LibraryFile::signature`]. Stage 2 does this for every file a host reads.
    pub fn examine_signature(&mut self, trust: &std::collections::BTreeMap<String, String>) {
        let (status, text) =
            crate::library::signature::examine_with_text(&self.path, &self.bytes, trust);
        self.signature = status;
        self.signature_text = text;
    }

    /// The bytes stage 2 read and checked (empty once they were sealed or loaded): what an
    /// install copies, so that it copies exactly what it checked.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The text of the signature beside the file, as it was read and checked.
    pub fn signature_text(&self) -> Option<&str> {
        self.signature_text.as_deref()
    }

    /// A built-in plugin of type `P` as the rest of the pipeline sees a file: its manifest
    /// checked like a library's, with this host's own provenance, and no bytes or hash.
    ///
    /// # Errors
    ///
    /// `bad_manifest` if `P::MANIFEST` is not a valid manifest.
    pub(crate) fn builtin<P: Builtin>() -> Result<Self, Refusal> {
        let path = PathBuf::from(BUILTIN_PATH);
        let manifest = Manifest::from_json(P::MANIFEST)
            .map_err(|e| Refusal::new(&path, RefusalReason::BadManifest, e.to_string()))?;
        let path = PathBuf::from(format!("{BUILTIN_PATH}{}", manifest.id));
        let block = (!P::RESOURCE_BLOCK.is_empty()).then_some(P::RESOURCE_BLOCK);
        let resources = resources::check_block(&manifest, block)
            .map_err(|e| Refusal::new(&path, RefusalReason::BadManifest, e))?;
        Ok(Self {
            path,
            bytes: Bytes::Released,
            sealed: None,
            len: 0,
            blake3: String::new(),
            sha256: OnceLock::new(),
            block_bytes: Vec::new(),
            loadable_end: 0,
            block: ManifestBlock {
                abi_version: ABI_VERSION.to_owned(),
                rustc: BUILD_RUSTC.to_owned(),
                target: BUILD_TARGET.to_owned(),
                panic: BUILD_PANIC.to_owned(),
                manifest_json: P::MANIFEST.to_owned(),
                resources_blake3: None,
                len: 0,
            },
            manifest,
            origin: Origin::Builtin(builtin_module::<P>()),
            signature: crate::library::signature::SignatureStatus::Unsigned,
            signature_text: None,
            resources,
            descriptor: None,
            placement: Placement::SealedCopy {
                why: "built into the host program".to_owned(),
            },
        })
    }

    /// The files the plugin ships inside its library, in the order `plugin.json` declares
    /// them, as checked in stage 2 (a built-in plugin's come from
    /// [`Builtin::RESOURCE_BLOCK`]).
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Whether the plugin is compiled into the host program rather than loaded from a file.
    pub fn is_builtin(&self) -> bool {
        matches!(self.origin, Origin::Builtin(_))
    }

    /// The size of the library in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file is empty (never true for a file that passed stage 2).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// SHA-256 of the file's bytes, lower-case hex. Only pins written before BLAKE3 became the
    /// identity (a policy's `sha256 = ...`, an older lock file) ask for it, so it is computed on
    /// first use (at startup, in stage 2 for a file a pin names this way). `None` for a
    /// built-in plugin, or once the bytes have been released without it having been asked for.
    pub fn sha256(&self) -> Option<&str> {
        if self.bytes.is_empty() && self.sha256.get().is_none() {
            return None;
        }
        Some(
            self.sha256
                .get_or_init(|| hex(&Sha256::digest(&self.bytes[..]))),
        )
    }

    /// Keeps `copy`, the sealed in-memory copy of the checked bytes, in place of the bytes (and
    /// of the file's descriptor).
    pub(crate) fn keep_sealed(&mut self, copy: File) {
        self.sealed = Some(Arc::new(SealedCopy::new(copy)));
        self.bytes = Bytes::Released;
        self.descriptor = None;
    }

    /// Drops the file's bytes and closes its sealed copy or its descriptor once the library is
    /// loaded (its mapping keeps what it needs); the hash and manifest stay.
    pub(crate) fn release_bytes(&mut self) {
        self.bytes = Bytes::Released;
        self.sealed = None;
        self.descriptor = None;
    }
}

/// Reads and checks one library file without running any of it.
///
/// `open` is the path to open (a symlink's target); `file` is the name reports use.
///
/// # Errors
///
/// A [`Refusal`] with the stage-2 reason: `not_a_library`, `too_large`, `truncated`,
/// `no_manifest`, `bad_manifest`, or `build_mismatch` for another architecture.
pub fn read_library(file: &Path, open: &Path, max_size: u64) -> Result<LibraryFile, Refusal> {
    read_library_as(file, open, max_size, None, Platforms::This)
}

/// Stage 2 for a library built for any platform (publishing a cross-built one): the same
/// checks as [`read_library`] but this host's format and architecture, and its embedded
/// provenance must name the file's own (an ELF for AArch64 must say `aarch64-…-linux-…`).
///
/// # Errors
///
/// As [`read_library`]; `build_mismatch` when the provenance names another platform than the
/// file's.
pub fn read_built_library(file: &Path, max_size: u64) -> Result<LibraryFile, Refusal> {
    read_library_as(file, file, max_size, None, Platforms::Any)
}

/// [`read_library`]; with `map`, a library that may be loaded in place is mapped rather than
/// read into memory (stage 2 for a load: the dynamic linker maps the same file next).
pub(crate) fn read_library_as(
    file: &Path,
    open: &Path,
    max_size: u64,
    map: Option<Mapper>,
    platforms: Platforms,
) -> Result<LibraryFile, Refusal> {
    let refuse = |reason, detail: String| Refusal::new(file, reason, detail);
    let mut handle = open_no_follow(open)
        .map_err(|e| refuse(RefusalReason::NotALibrary, format!("cannot open: {e}")))?;
    let meta = handle
        .metadata()
        .map_err(|e| refuse(RefusalReason::NotALibrary, format!("cannot stat: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(
            RefusalReason::NotALibrary,
            "not a regular file (a directory, FIFO or device has the library suffix)".to_owned(),
        ));
    }
    if crate::library::permissions::writable_by_others(&meta) {
        return Err(refuse(
            RefusalReason::UnsafePermissions,
            "the library is writable by other users, who could change it; remove their write permission (chmod o-w)"
                .to_owned(),
        ));
    }
    if meta.len() > max_size {
        return Err(refuse(
            RefusalReason::TooLarge,
            format!(
                "the file is {} bytes; the cap is {max_size} bytes (raise it with the host's max_library_size)",
                meta.len()
            ),
        ));
    }
    let in_place = placement::in_place_rule(&handle, &meta);
    if let (Some(mapper), Ok(_)) = (map, &in_place) {
        if let Some(bytes) = placement::mapped(&handle, &meta, mapper) {
            let mut library = check_bytes(file, bytes, platforms)?;
            library.set_placement(in_place, handle, &meta);
            return Ok(library);
        }
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // Read at most one byte past the cap: the file may grow between stat and read.
    (&mut handle)
        .take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(RefusalReason::NotALibrary, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max_size {
        return Err(refuse(
            RefusalReason::TooLarge,
            format!("the file grew past the cap of {max_size} bytes while being read"),
        ));
    }
    let mut library = check_bytes(file, Bytes::Owned(bytes), platforms)?;
    library.set_placement(in_place, handle, &meta);
    Ok(library)
}

/// Stage 2 on bytes already read: structure, manifest block and manifest. `file` is the name
/// reports use. Never panics, whatever the bytes (the fuzz target `file_reader` drives it).
///
/// # Errors
///
/// As [`read_library`], for everything after reading.
pub fn read_library_bytes(file: &Path, bytes: Vec<u8>) -> Result<LibraryFile, Refusal> {
    check_bytes(file, Bytes::Owned(bytes), Platforms::This)
}

fn check_bytes(file: &Path, bytes: Bytes, platforms: Platforms) -> Result<LibraryFile, Refusal> {
    let refuse = |reason, detail: String| Refusal::new(file, reason, detail);
    let (block_bytes, block, loadable_end, section) =
        check_object(&bytes, platforms).map_err(|(reason, detail)| refuse(reason, detail))?;
    let manifest = Manifest::from_json(&block.manifest_json)
        .map_err(|e| refuse(RefusalReason::BadManifest, e.to_string()))?;
    let resources = resources::check_file(&manifest, &block, section)
        .map_err(|detail| refuse(RefusalReason::BadManifest, detail))?;
    // Mapped bytes (a library that may be loaded in place) are hashed when the identity is
    // first needed: in stage 2 for a pin, a lock or a reload, in stage 4 otherwise, before
    // `dlopen` (`LibraryFile::identify`).
    let blake3 = if bytes.is_mapped() {
        String::new()
    } else {
        blake3::hash(&bytes).to_hex().to_string()
    };
    Ok(LibraryFile {
        path: file.to_owned(),
        len: bytes.len(),
        bytes,
        sealed: None,
        blake3,
        sha256: OnceLock::new(),
        block_bytes,
        loadable_end,
        block,
        manifest,
        origin: Origin::File,
        signature: crate::library::signature::SignatureStatus::Unsigned,
        signature_text: None,
        resources,
        descriptor: None,
        placement: Placement::SealedCopy {
            why: "read from bytes, not from a file".to_owned(),
        },
    })
}

/// A 256-bit digest written by an operator (a pin), as lower-case hex: `None` unless it is 64
/// hex digits.
pub(crate) fn parse_digest(text: &str) -> Option<String> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOFOLLOW: `open` is already
    // the resolved path; a symlink swapped in since is refused, not followed.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

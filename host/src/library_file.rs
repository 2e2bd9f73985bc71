//! Stage 2, read without running: the library file is read into memory once, checked for
//! structure with the `object` crate, and its manifest block parsed. Nothing of the library
//! executes here; these bytes are the ones hashed, checked and later copied to the shadow path
//! that the dynamic linker opens.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use airlock_abi::__private::builtin_module;
use airlock_abi::abi::{
    ManifestBlock, PluginModuleRef, BLOCK_MAGIC, BLOCK_SECTION, BLOCK_SECTION_MACHO, BUILD_PANIC,
    BUILD_RUSTC, BUILD_TARGET,
};
use airlock_abi::manifest::Manifest;
use airlock_abi::{Builtin, ABI_VERSION};
use object::{Object, ObjectSection, ObjectSegment};
use sha2::{Digest, Sha256};

use crate::error::{Refusal, RefusalReason};

/// What reports show as the "file" of a built-in plugin, followed by its id.
pub const BUILTIN_PATH: &str = "builtin:";

/// The default cap on a library's size; larger files are refused without being read.
pub const DEFAULT_MAX_LIBRARY_SIZE: u64 = 256 * 1024 * 1024;

/// A library file that passed stage 2: structurally whole, with a well-formed manifest.
#[derive(Debug, Clone)]
pub struct LibraryFile {
    /// The file as found in the plugin directory.
    pub path: PathBuf,
    /// The file's bytes, exactly as checked (and later loaded).
    pub(crate) bytes: Vec<u8>,
    /// sha256 of `bytes`, lower-case hex.
    pub sha256: String,
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
        Ok(Self {
            path,
            bytes: Vec::new(),
            sha256: String::new(),
            block_bytes: Vec::new(),
            loadable_end: 0,
            block: ManifestBlock {
                abi_version: ABI_VERSION.to_owned(),
                rustc: BUILD_RUSTC.to_owned(),
                target: BUILD_TARGET.to_owned(),
                panic: BUILD_PANIC.to_owned(),
                manifest_json: P::MANIFEST.to_owned(),
                len: 0,
            },
            manifest,
            origin: Origin::Builtin(builtin_module::<P>()),
        })
    }

    /// Whether the plugin is compiled into the host program rather than loaded from a file.
    pub fn is_builtin(&self) -> bool {
        matches!(self.origin, Origin::Builtin(_))
    }

    /// The size of the library in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the file is empty (never true for a file that passed stage 2).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Drops the file's bytes once they have been loaded; the hash and manifest stay.
    pub(crate) fn release_bytes(&mut self) {
        self.bytes = Vec::new();
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
    if crate::discover::writable_by_others(open) {
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
    read_library_bytes(file, bytes)
}

/// Stage 2 on bytes already read: structure, manifest block and manifest. `file` is the name
/// reports use. Never panics, whatever the bytes (the fuzz target `file_reader` drives it).
///
/// # Errors
///
/// As [`read_library`], for everything after reading.
pub fn read_library_bytes(file: &Path, bytes: Vec<u8>) -> Result<LibraryFile, Refusal> {
    let refuse = |reason, detail: String| Refusal::new(file, reason, detail);
    let (block_bytes, block, loadable_end) =
        check_object(&bytes).map_err(|(reason, detail)| refuse(reason, detail))?;
    let manifest = Manifest::from_json(&block.manifest_json)
        .map_err(|e| refuse(RefusalReason::BadManifest, e.to_string()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    Ok(LibraryFile {
        path: file.to_owned(),
        bytes,
        sha256,
        block_bytes,
        loadable_end,
        block,
        manifest,
        origin: Origin::File,
    })
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

type Stage2Error = (RefusalReason, String);

/// Checks the object structure and returns the manifest block.
fn check_object(bytes: &[u8]) -> Result<(Vec<u8>, ManifestBlock, u64), Stage2Error> {
    let format = detect_format(bytes)?;
    if let Some(end) = claimed_header_extent(bytes) {
        if end > bytes.len() as u64 {
            return Err((
                RefusalReason::Truncated,
                format!(
                    "the headers describe {end} bytes but the file has {}; it was cut short (a partial copy or an interrupted build)",
                    bytes.len()
                ),
            ));
        }
    }
    let obj = object::File::parse(bytes).map_err(|e| {
        (
            RefusalReason::NotALibrary,
            format!("the {format} file is malformed: {e}"),
        )
    })?;
    if obj.kind() != object::ObjectKind::Dynamic {
        return Err((
            RefusalReason::NotALibrary,
            format!(
                "the {format} file is not a shared library but {:?}",
                obj.kind()
            ),
        ));
    }
    let host_arch = host_architecture();
    if obj.architecture() != host_arch || obj.is_64() != cfg!(target_pointer_width = "64") {
        return Err((
            RefusalReason::BuildMismatch,
            format!(
                "built for {:?} ({}-bit); this host runs {host_arch:?} ({}-bit)",
                obj.architecture(),
                if obj.is_64() { 64 } else { 32 },
                usize::BITS
            ),
        ));
    }
    let mut loadable_end = 0;
    for segment in obj.segments() {
        let (offset, size) = segment.file_range();
        loadable_end = loadable_end.max(offset.saturating_add(size));
        if offset.saturating_add(size) > bytes.len() as u64 {
            return Err((
                RefusalReason::Truncated,
                format!(
                    "a loadable segment spans bytes {offset}..{} but the file has {}; loading it would crash the process",
                    offset.saturating_add(size),
                    bytes.len()
                ),
            ));
        }
    }
    let section_name = if format == "Mach-O" {
        BLOCK_SECTION_MACHO
    } else {
        BLOCK_SECTION
    };
    let sections: Vec<_> = obj
        .sections()
        .filter(|s| s.name() == Ok(section_name))
        .collect();
    let section = match sections.as_slice() {
        [] => {
            return Err((
                RefusalReason::NoManifest,
                format!(
                    "no {section_name} section: the library was not built with airlock_abi::export_plugin!"
                ),
            ))
        }
        [one] => one,
        _ => {
            return Err((
                RefusalReason::BadManifest,
                format!("{} {section_name} sections; a plugin has exactly one", sections.len()),
            ))
        }
    };
    if let Some((offset, size)) = section.file_range() {
        if offset.saturating_add(size) > bytes.len() as u64 {
            return Err((
                RefusalReason::Truncated,
                format!(
                    "the manifest section lies past the end of the file ({} bytes)",
                    bytes.len()
                ),
            ));
        }
    }
    let data = section.data().map_err(|e| {
        (
            RefusalReason::Truncated,
            format!("the manifest section cannot be read: {e}"),
        )
    })?;
    if !data.starts_with(&BLOCK_MAGIC) {
        return Err((
            RefusalReason::BadManifest,
            format!("the {section_name} section does not start with the manifest magic"),
        ));
    }
    let block = ManifestBlock::parse(data)
        .map_err(|e| (RefusalReason::BadManifest, format!("manifest block: {e}")))?;
    Ok((data[..block.len].to_vec(), block, loadable_end))
}

fn detect_format(bytes: &[u8]) -> Result<&'static str, Stage2Error> {
    let format = match bytes {
        [0x7f, b'E', b'L', b'F', ..] => "ELF",
        [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..] | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..] => "Mach-O",
        [b'M', b'Z', ..] => "PE",
        [] => return Err((RefusalReason::NotALibrary, "the file is empty".to_owned())),
        _ => {
            return Err((
                RefusalReason::NotALibrary,
                "not a shared library: no ELF, Mach-O or PE header".to_owned(),
            ))
        }
    };
    let native = if cfg!(target_vendor = "apple") {
        "Mach-O"
    } else if cfg!(windows) {
        "PE"
    } else {
        "ELF"
    };
    if format != native {
        return Err((
            RefusalReason::NotALibrary,
            format!("a {format} file cannot be loaded on this platform, which uses {native}"),
        ));
    }
    Ok(format)
}

/// For ELF, the furthest byte the file header claims (program and section header tables), so
/// that a cut file is reported as `truncated` rather than as malformed.
fn claimed_header_extent(bytes: &[u8]) -> Option<u64> {
    use object::elf::{FileHeader32, FileHeader64, ELFCLASS32, ELFCLASS64};
    use object::read::elf::FileHeader;
    use object::Endianness;
    const HEADER_LEN_64: u64 = 64;
    const HEADER_LEN_32: u64 = 52;
    if bytes.len() < 5 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    let min = if bytes[4] == ELFCLASS64 {
        HEADER_LEN_64
    } else {
        HEADER_LEN_32
    };
    if (bytes.len() as u64) < min {
        return Some(min);
    }
    fn extent<H: FileHeader<Endian = Endianness>>(h: &H, data: &[u8]) -> Option<u64> {
        let e = h.endian().ok()?;
        let ph = h.e_phoff(e).into() + u64::from(h.e_phnum(e)) * u64::from(h.e_phentsize(e));
        let sh = h.e_shoff(e).into() + u64::from(h.e_shnum(e)) * u64::from(h.e_shentsize(e));
        let _ = data;
        Some(ph.max(sh))
    }
    match bytes[4] {
        ELFCLASS64 => FileHeader64::<Endianness>::parse(bytes)
            .ok()
            .and_then(|h| extent(h, bytes)),
        ELFCLASS32 => FileHeader32::<Endianness>::parse(bytes)
            .ok()
            .and_then(|h| extent(h, bytes)),
        _ => None,
    }
}

fn host_architecture() -> object::Architecture {
    use object::Architecture as A;
    match std::env::consts::ARCH {
        "x86_64" => A::X86_64,
        "x86" => A::I386,
        "aarch64" => A::Aarch64,
        "arm" => A::Arm,
        "riscv64" => A::Riscv64,
        "powerpc64" => A::PowerPc64,
        "s390x" => A::S390x,
        "loongarch64" => A::LoongArch64,
        _ => A::Unknown,
    }
}

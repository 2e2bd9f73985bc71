//! Where stage 4 maps a library from — in place, or a sealed copy — and the bytes stage 2
//! checks: read into memory, or (for a library loaded in place) mapped from its file.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{LibraryFile, OPEN_SEALED};

/// Where a library's code is mapped from, and why: what the load report and `airlock check`
/// show of each plugin (ARCHITECTURE.md, "Loading in place").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Placement {
    /// The file itself, at its real path: the descriptor stage 2 examined (`fstat`) and hashed
    /// is the one the dynamic linker maps. Only where root and the host's own user alone can
    /// change the file and every directory above it.
    InPlace {
        /// The file's real path (what `/proc/<pid>/maps` shows).
        path: PathBuf,
    },
    /// A sealed in-memory copy of the checked bytes (or, where the system has none, a shadow
    /// file), as for every file another user could change.
    SealedCopy {
        /// Why not in place: which path broke which rule, or what else decided it.
        why: String,
    },
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InPlace { path } => write!(f, "in place from {}", path.display()),
            Self::SealedCopy { why } => write!(f, "from a sealed copy ({why})"),
        }
    }
}

/// The open library file that stage 4 loads in place: its descriptor and its identity (device
/// and inode), which the dynamic linker goes by. Counted with the sealed copies against the
/// budget of descriptors startup may hold (`loader::seal`).
#[derive(Debug)]
pub(crate) struct Descriptor {
    /// The file, open read-only.
    pub file: File,
    /// `st_dev` and `st_ino`.
    pub inode: (u64, u64),
}

impl Descriptor {
    #[cfg(target_os = "linux")]
    fn new(file: File, inode: (u64, u64)) -> Self {
        OPEN_SEALED.fetch_add(1, Ordering::Relaxed);
        Self { file, inode }
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        OPEN_SEALED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A read-only mapping of a library file, made by the loader (the room for `unsafe`) for a file
/// the in-place rule passed.
pub(crate) trait FileMapping: Send + Sync + std::fmt::Debug {
    /// The mapped bytes.
    fn bytes(&self) -> &[u8];
}

/// Maps the first `len` bytes of a file the in-place rule passed; `None` if it cannot (the file
/// is then read into memory instead).
pub(crate) type Mapper = fn(&File, usize) -> Option<Arc<dyn FileMapping>>;

/// The bytes stage 2 checked: read into memory, or mapped from a file that may be loaded in
/// place (only root and the host's own user can change it).
#[derive(Debug, Clone, Default)]
pub(crate) enum Bytes {
    /// Read (or given) into memory; empty once released.
    #[default]
    Released,
    /// Read into memory.
    Owned(Vec<u8>),
    /// Mapped from the file.
    Mapped(Arc<dyn FileMapping>),
}

impl Bytes {
    /// Whether they were mapped from the file (so they are the file's bytes now, not
    /// necessarily the ones checked, if root or the host's user rewrote it since).
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Self::Mapped(_))
    }

    /// The bytes as an owned vector (copied if mapped).
    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Self::Released => Vec::new(),
            Self::Owned(bytes) => bytes,
            Self::Mapped(mapped) => mapped.bytes().to_vec(),
        }
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Released => &[],
            Self::Owned(bytes) => bytes,
            Self::Mapped(mapped) => mapped.bytes(),
        }
    }
}

impl LibraryFile {
    /// Where stage 4 maps the library from (after a load), or would (after a check).
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Keeps only the descriptor of a library that will be loaded in place: the bytes were
    /// hashed and checked, and the dynamic linker maps the descriptor.
    pub(crate) fn keep_descriptor_only(&mut self) {
        // Not yet hashed: stage 4 hashes the mapping, so it stays until then.
        if self.descriptor.is_some() && !self.blake3.is_empty() {
            self.bytes = Bytes::Released;
        }
    }

    /// Loads from a sealed copy after all, for `why`; the descriptor stays (stage 4 rereads
    /// from it if the bytes were released).
    pub(crate) fn seal_instead(&mut self, why: String) {
        self.placement = Placement::SealedCopy { why };
    }

    /// Computes the identity (BLAKE3) of bytes stage 2 mapped, if not yet done; a no-op for
    /// bytes read into memory (hashed as they were read) and for a built-in plugin.
    pub(crate) fn identify(&mut self) {
        if self.blake3.is_empty() && self.bytes.is_mapped() {
            self.blake3 = blake3::hash(&self.bytes).to_hex().to_string();
        }
    }

    /// Whether stage 4 will try to load it in place.
    pub(crate) fn in_place(&self) -> bool {
        matches!(self.placement, Placement::InPlace { .. }) && self.descriptor.is_some()
    }

    /// Drops the descriptor kept for loading in place (what stage 4 then does is what the
    /// bytes allow: `check` keeps them, and [`crate::Host::load_checked`] loads a sealed copy).
    pub(crate) fn close_descriptor(&mut self) {
        self.descriptor = None;
    }

    /// Keeps what the in-place rule found: the descriptor, if the library may be loaded in
    /// place; otherwise why not.
    pub(super) fn set_placement(
        &mut self,
        rule: Result<PathBuf, String>,
        handle: File,
        meta: &std::fs::Metadata,
    ) {
        match rule {
            #[cfg(target_os = "linux")]
            Ok(path) => {
                use std::os::unix::fs::MetadataExt;
                self.placement = Placement::InPlace { path };
                let inode = (meta.dev(), meta.ino());
                self.descriptor = Some(Arc::new(Descriptor::new(handle, inode)));
            }
            #[cfg(not(target_os = "linux"))]
            Ok(_) => drop((handle, meta)),
            Err(why) => self.placement = Placement::SealedCopy { why },
        }
    }
}

/// The in-place rule on the descriptor stage 2 opened and its own `fstat`: the file's real path
/// if it may be loaded in place, otherwise why not.
#[cfg(target_os = "linux")]
pub(super) fn in_place_rule(handle: &File, meta: &std::fs::Metadata) -> Result<PathBuf, String> {
    crate::library::permissions::in_place::check(handle, meta)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn in_place_rule(_: &File, _: &std::fs::Metadata) -> Result<PathBuf, String> {
    Err("this system loads every library from a sealed copy".to_owned())
}

/// The file mapped with `mapper`, for a library the in-place rule passed; `None` if it cannot
/// be (it is read instead).
pub(super) fn mapped(handle: &File, meta: &std::fs::Metadata, mapper: Mapper) -> Option<Bytes> {
    let len = usize::try_from(meta.len()).ok()?;
    mapper(handle, len).map(Bytes::Mapped)
}

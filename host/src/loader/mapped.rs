//! A library file mapped read-only for stage 2 to check and hash in place, without copying it
//! into the host's memory first: only for a library that may be loaded in place (no user but
//! root and the host's own can change it), which the dynamic linker maps the same way next.

use std::fs::File;
use std::sync::Arc;

use crate::library::file::FileMapping;

/// Maps a library file the in-place rule passed, for stage 2 (`library::file::Mapper`).
pub(crate) fn map_library(file: &File, len: usize) -> Option<Arc<dyn FileMapping>> {
    Mapped::library(file, len)
        .ok()
        .map(|m| Arc::new(m) as Arc<dyn FileMapping>)
}

/// `len` bytes of a file, mapped private and read-only; unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Mapped {
    address: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only memory owned by this value alone; sharing or sending the
// pointer across threads is as safe as sharing a `&[u8]`.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the first `len` (non-zero) bytes of `file`, which the in-place rule
    /// (`library::permissions::in_place`) passed: only root and the host's own user can write
    /// it.
    ///
    /// # Errors
    ///
    /// The system's, if it cannot be mapped (the caller reads the file instead).
    pub(crate) fn library(file: &File, len: usize) -> std::io::Result<Self> {
        use rustix::mm::{mmap, MapFlags, ProtFlags};
        if len == 0 {
            return Err(std::io::Error::other("an empty file is not mapped"));
        }
        // SAFETY: a new private, read-only mapping at an address the kernel picks: it aliases
        // no memory of this process. The bytes behind it are the file's: only root and the
        // host's own user can change them (the in-place rule), and either could change the
        // host's memory directly, so neither is a writer the host defends against (ARCHITECTURE.md,
        // "Loading in place"); the dynamic linker maps the same file next, on the same terms.
        let address = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::PRIVATE,
                file,
                0,
            )
        }?;
        let address = std::ptr::NonNull::new(address.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self { address, len })
    }
}

impl FileMapping for Mapped {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `address` is a live read-only mapping of `len` bytes owned by `self` (unmapped
        // only in `drop`), so it is valid for reads for as long as `self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.address.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `library` with this address and length and is
        // unmapped once; no borrow of `bytes` outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.address.as_ptr().cast(), self.len) };
    }
}

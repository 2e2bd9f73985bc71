//! The loader's Windows part: `LoadLibrary` (imports resolve at load time); there are no
//! sealed copies there.

use std::fs;
use std::io::Write;
use std::path::Path;

/// No sealed copies on this system.
pub(super) fn copy_out(_: &fs::File, _: u64, _: &mut impl Write) -> std::io::Result<()> {
    Err(std::io::Error::other("no sealed copies on this system"))
}

/// Opens `path` with `LoadLibrary` and never closes it.
pub(super) fn open(path: &Path) -> Result<libloading::Library, libloading::Error> {
    // SAFETY: opening runs the library's initializers; the file passed every check that can be
    // made without running it (stages 1–3), and running its code is what loading means from
    // here on. Windows resolves imports at load time, so a missing one is refused here.
    unsafe { libloading::Library::new(path) }
}

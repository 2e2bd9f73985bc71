//! The loader's Unix part: `dlopen` with `RTLD_NOW | RTLD_LOCAL`, and copying a sealed
//! copy's bytes out by position.

use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes the first `len` bytes of `from` to `out`, whatever `from`'s file position.
pub(super) fn copy_out(from: &fs::File, len: u64, out: &mut impl Write) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from((len - offset).min(chunk.len() as u64)).unwrap_or(chunk.len());
        from.read_exact_at(&mut chunk[..want], offset)?;
        out.write_all(&chunk[..want])?;
        offset += want as u64;
    }
    Ok(())
}

pub(super) fn open(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: opening runs the library's initializers. In `load` the file passed every check
    // that can be made without running it (stages 1–3), and running its code is what loading
    // means from there on; `bare_dlopen` (benchmarks only) opens a file unchecked on purpose.
    // RTLD_NOW resolves every symbol now, so a missing one is refused here, not at first call.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

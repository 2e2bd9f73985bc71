//! The loader's Unix part: copying a sealed copy's bytes out by position.

use std::fs;
use std::io::Write;

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

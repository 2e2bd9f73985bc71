//! The startup benchmark's baseline (feature `test-support`): a library opened the way a bare
//! `dlopen(RTLD_NOW | RTLD_LOCAL)` opens it, at its own path, with none of Airlock's checks and
//! no copy. Never part of a product: it runs a library's initializers unchecked.

use std::path::Path;

/// Opens `path` with `dlopen(RTLD_NOW | RTLD_LOCAL)` and never closes it, as a host without
/// Airlock would load a plugin: what Airlock's startup is measured against.
///
/// # Errors
///
/// The dynamic linker's message if it refuses the file.
pub fn bare_dlopen(path: &Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: opening runs the library's initializers with nothing checked first; that is this
    // function's documented purpose, behind a feature only the benchmarks enable, and they pass
    // the benchmark fixture they built. The handle is leaked, so nothing it maps is unmapped.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) };
    library.map(std::mem::forget).map_err(|e| e.to_string())
}

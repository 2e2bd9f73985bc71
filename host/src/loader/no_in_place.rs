//! Where libraries are never loaded in place (every system but Linux): stage 4 always makes a
//! sealed copy (or a shadow file).

use crate::error::{Refusal, RefusalReason};
use crate::library::file::LibraryFile;

const NEVER: &str = "this system loads every library from a sealed copy";

/// What became of a load in place: never one here.
pub(super) enum Loaded {
    /// Never made here.
    #[expect(dead_code, reason = "the Linux loader's shape, never made here")]
    Yes(libloading::Library),
    /// Never made here.
    #[expect(dead_code, reason = "the Linux loader's shape, never made here")]
    Refused(Refusal),
    /// Always.
    No(String),
}

pub(super) fn keep(_: &mut LibraryFile) -> Result<(), String> {
    Err(NEVER.to_owned())
}

pub(super) fn load(_: &mut LibraryFile) -> Loaded {
    Loaded::No(NEVER.to_owned())
}

pub(super) fn reread(file: &mut LibraryFile) -> Result<(), Refusal> {
    Err(Refusal::new(
        &file.path,
        RefusalReason::LoadFailed,
        "its checked bytes are no longer held; check it again".to_owned(),
    )
    .with_id(&file.manifest.id))
}

//! Stages 1 and 2: finding plugin libraries in the plugin directories (refusing those others
//! than their owner could change) and reading each one without running it — its structure, its
//! embedded manifest and build block, its identity (BLAKE3 and SHA-256), its publisher's
//! signature — and the lock file that pins identities.

pub(crate) mod discover;
pub(crate) mod file;
pub(crate) mod lock;
pub(crate) mod permissions;
pub(crate) mod signature;

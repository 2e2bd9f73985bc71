//! Plugins past one machine: published to and installed from OCI registries (or an OCI image
//! layout on disk) as ORAS-style artifacts — one tag, one entry per platform, signed, installed
//! by digest and pinned in the lock — and hosts that follow a channel (`[[sources]]`).
//!
//! Nothing here trusts the registry: every manifest and blob is hashed as it arrives and
//! refused unless it hashes to the digest that named it; the library then goes through the same
//! checks as a file (stages 2–3, the signature rule, claims, ids) before it is placed, by a
//! rename, into the plugin directory. `docs/oci.md` describes the artifact layout.

pub mod artifact;
#[cfg(feature = "oci")]
mod auth;
mod fetch;
#[cfg(feature = "oci")]
mod follow;
mod install;
mod layout;
#[cfg(feature = "oci")]
mod poll;
pub mod reference;
#[cfg(feature = "oci")]
mod registry;
mod store;

pub use artifact::{index, pack, Packed};
pub use fetch::{copy, fetch, resolve, Fetched, Resolved};
#[cfg(feature = "oci")]
pub use follow::{Follower, SourceOutcome};
pub use install::{
    install_file, installed, place, remove_library, unpin, Destination, Installed, InstalledFile,
    Origin,
};
pub use layout::Layout;
pub use reference::{ArtifactRef, Repository, Selector};
#[cfg(feature = "oci")]
pub use registry::Registry;
pub use store::{open, RegistryOptions, Store};

use std::path::PathBuf;

use crate::error::Refusal;

/// The target triple this host was built for: the index entry it installs.
pub const HOST_TARGET: &str = airlock_abi::abi::BUILD_TARGET;

/// The largest manifest or index accepted from a registry.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// The largest signature layer accepted (as large as a signature file beside a library may be).
pub const MAX_SIGNATURE_SIZE: u64 = crate::library::signature::MAX_SIGNATURE_LEN;

/// Why publishing, fetching or installing an artifact failed: which reference, which step, and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A reference that does not read.
    #[error("{reference}: {why}")]
    Reference {
        /// The reference as written.
        reference: String,
        /// What is wrong and what was expected.
        why: String,
    },
    /// The registry (or the layout) could not be reached or refused a request.
    #[error("{reference}: {step}: {message}")]
    Registry {
        /// The artifact.
        reference: String,
        /// What was being done.
        step: String,
        /// What the registry or the network said.
        message: String,
    },
    /// Content that does not hash to the digest that named it: refused, whatever the registry
    /// says.
    #[error(
        "{reference}: {what} {expected} arrived with sha256 {actual}: the registry (or something \
         between) changed it; nothing was installed (digest_mismatch)"
    )]
    Digest {
        /// The artifact.
        reference: String,
        /// What was fetched (the manifest, the library layer, …).
        what: String,
        /// The digest that named it.
        expected: String,
        /// What it hashed to.
        actual: String,
    },
    /// The content is not an Airlock artifact, or breaks the layout's rules.
    #[error("{0}")]
    Artifact(String),
    /// An index without an entry for this host's target.
    #[error(
        "{reference}: no entry for this host's target {target} (the index has: {}); publish a \
         build for it",
        present.join(", ")
    )]
    NoPlatform {
        /// The artifact.
        reference: String,
        /// This host's target triple.
        target: String,
        /// The targets the index has.
        present: Vec<String>,
    },
    /// The library was refused by the checks a file gets, with the same reason code.
    #[error("{0}")]
    Refused(Box<Refusal>),
    /// The install would clash with what is installed (an id, a file name, a claim).
    #[error("{0}")]
    Conflict(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl FleetError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}

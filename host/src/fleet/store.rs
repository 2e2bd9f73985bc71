//! What fetching and publishing need of where artifacts are: a registry or an image layout.

use std::io::Write;

use super::artifact::{Blob, Descriptor};
use super::reference::{ArtifactRef, Repository};
use super::{FleetError, Layout};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`HOST` or `HOST:PORT`) that may be spoken to over plain HTTP although not on
    /// a loopback address (`[host] insecure_registries`).
    pub insecure: Vec<String>,
    /// Certificates (PEM files) trusted as roots besides the system's (`[host] tls_roots`): a
    /// registry with an internal CA.
    pub roots: Vec<std::path::PathBuf>,
}

impl RegistryOptions {
    /// What the policy's `[host]` table says of registries.
    pub fn from_policy(policy: &crate::policy::Policy) -> Self {
        Self {
            insecure: policy.host().insecure_registries.clone(),
            roots: policy.host().tls_roots.clone(),
        }
    }
}

/// A repository of artifacts. Implementations fetch and store bytes; the callers hash them.
pub trait Store: Send {
    /// The manifest or index `reference` (a tag, or a digest) names, as served.
    ///
    /// # Errors
    ///
    /// [`FleetError::Registry`] if it cannot be fetched (or is over
    /// [`super::MAX_MANIFEST_SIZE`]).
    fn manifest(&mut self, reference: &str) -> Result<Vec<u8>, FleetError>;
    /// Writes the blob `descriptor` names to `out`; more than `max` bytes is an error.
    ///
    /// # Errors
    ///
    /// [`FleetError::Registry`] if it cannot be fetched, or is over `max`.
    fn blob(
        &mut self,
        descriptor: &Descriptor,
        out: &mut dyn Write,
        max: u64,
    ) -> Result<(), FleetError>;
    /// Every tag of the repository.
    ///
    /// # Errors
    ///
    /// [`FleetError::Registry`] if they cannot be listed.
    fn tags(&mut self) -> Result<Vec<String>, FleetError>;
    /// Stores a blob (a no-op if it is there already).
    ///
    /// # Errors
    ///
    /// [`FleetError::Registry`] if it cannot be stored.
    fn push_blob(&mut self, blob: &Blob) -> Result<(), FleetError>;
    /// Stores a manifest or index by its digest, and under `tag` if one is given.
    ///
    /// # Errors
    ///
    /// [`FleetError::Registry`] if it cannot be stored.
    fn push_manifest(&mut self, manifest: &Blob, tag: Option<&str>) -> Result<(), FleetError>;
}

/// The store `reference` names: its registry (plain HTTP only for a loopback address or a
/// registry `options` names as insecure), or its image layout (created when publishing).
///
/// # Errors
///
/// [`FleetError::Registry`] if the client cannot be set up, [`FleetError::Io`] if the layout
/// cannot be read.
pub fn open(
    reference: &ArtifactRef,
    options: &RegistryOptions,
    create: bool,
) -> Result<Box<dyn Store>, FleetError> {
    Ok(match &reference.repository {
        #[cfg(feature = "oci")]
        Repository::Registry {
            registry,
            repository,
        } => Box::new(super::Registry::connect(registry, repository, options)?),
        #[cfg(not(feature = "oci"))]
        Repository::Registry { .. } => {
            let _ = options;
            return Err(FleetError::Artifact(format!(
                "{reference}: this program was built without registry support (the airlock \
                 crate's `oci` feature)"
            )));
        }
        Repository::Layout { dir } => Box::new(Layout::open(dir, create)?),
    })
}

/// A writer that refuses more than `left` bytes.
pub(crate) struct Bounded<'w> {
    pub out: &'w mut dyn Write,
    pub left: u64,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len() as u64;
        if len > self.left {
            return Err(std::io::Error::other(
                "more bytes than its descriptor's size",
            ));
        }
        self.left -= len;
        self.out.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

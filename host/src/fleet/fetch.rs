//! From a reference to verified bytes: the tag (or the highest version within a range), the
//! manifest — this host's entry of an index — and the library and its signature, each hashed
//! as it arrives and refused unless it matches the digest that named it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::artifact::{
    annotations, entry_for, sha256_digest, Blob, Descriptor, Document, LIBRARY_MEDIA_TYPE,
    SIGNATURE_MEDIA_TYPE,
};
use super::reference::{highest_within, ArtifactRef, Selector};
use super::{FleetError, Store, MAX_SIGNATURE_SIZE};
use crate::library::discover::library_suffix;
use crate::library::file::{hex, DEFAULT_MAX_LIBRARY_SIZE};
use crate::library::signature::signature_path;

/// What a reference names for this host, verified: the manifest that holds its library.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference with its selector as resolved: a range becomes the tag it chose.
    pub reference: ArtifactRef,
    /// The digest of this host's manifest (the entry of an index, or the manifest itself):
    /// what the lock pins as the source digest.
    pub digest: String,
    /// The manifest's annotations (id, version, target, publisher, as the publisher wrote them).
    pub annotations: BTreeMap<String, String>,
    document: Document,
}

/// A library fetched into a directory of the caller's, verified by digest, and the signature
/// beside it if the artifact has one.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The library, named by its layer's title.
    pub library: PathBuf,
    /// Its signature, if the artifact has one.
    pub signature: Option<PathBuf>,
}

/// Resolves `reference` for `target`: the tag a range picks, the manifest (or index, then this
/// target's entry), each checked against the digest that named it; and refuses anything but an
/// Airlock plugin.
///
/// # Errors
///
/// [`FleetError`]: the registry, a digest mismatch, no entry for `target`, not a plugin.
pub fn resolve(
    store: &mut dyn Store,
    reference: &ArtifactRef,
    target: &str,
) -> Result<Resolved, FleetError> {
    let (resolved, document, digest) = top(store, reference)?;
    let (document, digest) = if document.is_index() {
        let entry = entry_for(&resolved.to_string(), &document, target)?.clone();
        let (document, _) = manifest(store, &resolved, &entry.digest, Some(&entry.digest))?;
        (document, entry.digest)
    } else {
        // One build: if it says which target it is for, it must be this one.
        match document.annotations.get(annotations::TARGET) {
            Some(built) if built != target => {
                return Err(FleetError::NoPlatform {
                    reference: resolved.to_string(),
                    target: target.to_owned(),
                    present: vec![built.clone()],
                })
            }
            _ => (document, digest),
        }
    };
    if !document.is_plugin() {
        return Err(FleetError::Artifact(format!(
            "{resolved}: not an Airlock plugin (artifact type {:?}, config media type {:?}); \
             publish plugins with `airlock publish`",
            document.artifact_type.as_deref().unwrap_or("none"),
            document
                .config
                .as_ref()
                .map_or("none", |c| c.media_type.as_str())
        )));
    }
    Ok(Resolved {
        reference: resolved,
        digest,
        annotations: document.annotations.clone(),
        document,
    })
}

/// The tag chosen, and the top manifest or index, verified when a digest names it.
fn top(
    store: &mut dyn Store,
    reference: &ArtifactRef,
) -> Result<(ArtifactRef, Document, String), FleetError> {
    let name = match &reference.selector {
        Selector::Tag(tag) => tag.clone(),
        Selector::Digest(digest) => digest.clone(),
        Selector::Range(range) => {
            let tags = store.tags()?;
            highest_within(&tags, range)
                .ok_or_else(|| {
                    FleetError::Artifact(format!(
                        "{reference}: no tag is a version within {range} (tags: {})",
                        if tags.is_empty() {
                            "none".to_owned()
                        } else {
                            tags.join(", ")
                        }
                    ))
                })?
                .to_owned()
        }
    };
    let chosen = match &reference.selector {
        Selector::Range(_) => reference.with(Selector::Tag(name.clone())),
        _ => reference.clone(),
    };
    let expected = match &reference.selector {
        Selector::Digest(d) => Some(d.as_str()),
        _ => None,
    };
    let (document, digest) = manifest(store, &chosen, &name, expected)?;
    Ok((chosen, document, digest))
}

/// Fetches and reads a manifest, checking it hashes to `expected` when one is given.
fn manifest(
    store: &mut dyn Store,
    reference: &ArtifactRef,
    name: &str,
    expected: Option<&str>,
) -> Result<(Document, String), FleetError> {
    let (document, _, digest) = manifest_bytes(store, reference, name, expected)?;
    Ok((document, digest))
}

fn manifest_bytes(
    store: &mut dyn Store,
    reference: &ArtifactRef,
    name: &str,
    expected: Option<&str>,
) -> Result<(Document, Vec<u8>, String), FleetError> {
    let bytes = store.manifest(name)?;
    let actual = sha256_digest(&bytes);
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(FleetError::Digest {
            reference: reference.to_string(),
            what: "manifest".to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    let document = serde_json::from_slice(&bytes).map_err(|e| {
        FleetError::Artifact(format!(
            "{reference}: manifest {name} is not an OCI manifest: {e}"
        ))
    })?;
    Ok((document, bytes, actual))
}

/// Writes and hashes.
struct Hashing<W> {
    out: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Fetches a blob into `out`, refusing it unless it has its descriptor's size and digest.
fn blob(
    store: &mut dyn Store,
    reference: &ArtifactRef,
    descriptor: &Descriptor,
    what: &str,
    out: &mut dyn Write,
    max: u64,
) -> Result<(), FleetError> {
    if descriptor.size > max {
        return Err(FleetError::Artifact(format!(
            "{reference}: the {what} is {} bytes, over the {max} allowed",
            descriptor.size
        )));
    }
    let mut hashing = Hashing {
        out,
        hasher: Sha256::new(),
        len: 0,
    };
    store.blob(descriptor, &mut hashing, descriptor.size)?;
    let actual = format!("sha256:{}", hex(&hashing.hasher.finalize()));
    if actual != descriptor.digest || hashing.len != descriptor.size {
        return Err(FleetError::Digest {
            reference: reference.to_string(),
            what: what.to_owned(),
            expected: descriptor.digest.clone(),
            actual,
        });
    }
    Ok(())
}

/// A layer's file name, if it is a plain name of this platform's libraries.
fn library_name(reference: &ArtifactRef, layer: &Descriptor) -> Result<String, FleetError> {
    let title = layer
        .annotations
        .get(annotations::TITLE)
        .map(String::as_str)
        .unwrap_or_default();
    let suffix = format!(".{}", library_suffix());
    let plain = !title.is_empty()
        && title.len() <= 255
        && !title.starts_with('.')
        && !title.contains(['/', '\\', '\0'])
        && title.ends_with(&suffix);
    if plain {
        Ok(title.to_owned())
    } else {
        Err(FleetError::Artifact(format!(
            "{reference}: the library layer's title {title:?} is not a file name ending in \
             {suffix}: it names the file the library is installed as"
        )))
    }
}

/// Fetches the library (and its signature) of `resolved` into `dir`, verified.
///
/// # Errors
///
/// [`FleetError`]: no library layer or more than one, a bad title, a digest or size mismatch.
pub fn fetch(
    store: &mut dyn Store,
    resolved: &Resolved,
    dir: &Path,
) -> Result<Fetched, FleetError> {
    let reference = &resolved.reference;
    let of_type = |t: &str| -> Vec<&Descriptor> {
        resolved
            .document
            .layers
            .iter()
            .filter(|l| l.media_type == t)
            .collect()
    };
    let (libraries, signatures) = (of_type(LIBRARY_MEDIA_TYPE), of_type(SIGNATURE_MEDIA_TYPE));
    let [library] = libraries.as_slice() else {
        return Err(FleetError::Artifact(format!(
            "{reference}: {} library layers; an artifact has exactly one",
            libraries.len()
        )));
    };
    if signatures.len() > 1 {
        return Err(FleetError::Artifact(format!(
            "{reference}: {} signature layers; an artifact has at most one",
            signatures.len()
        )));
    }
    let path = dir.join(library_name(reference, library)?);
    let mut file = fs::File::create(&path).map_err(FleetError::io(&path))?;
    blob(
        store,
        reference,
        library,
        "library layer",
        &mut file,
        DEFAULT_MAX_LIBRARY_SIZE,
    )?;
    file.sync_all().map_err(FleetError::io(&path))?;
    let signature = match signatures.first() {
        Some(layer) => {
            let at = signature_path(&path);
            let mut bytes = Vec::new();
            blob(
                store,
                reference,
                layer,
                "signature layer",
                &mut bytes,
                MAX_SIGNATURE_SIZE,
            )?;
            fs::write(&at, bytes).map_err(FleetError::io(&at))?;
            Some(at)
        }
        None => None,
    };
    Ok(Fetched {
        library: path,
        signature,
    })
}

/// Copies what `reference` names — every platform of an index — from one store to another
/// (`airlock pull` into an image layout), verifying every byte, and tags it `tag` there.
/// Returns the digest of what was copied.
///
/// # Errors
///
/// [`FleetError`] as [`resolve`] and [`fetch`].
pub fn copy(
    from: &mut dyn Store,
    reference: &ArtifactRef,
    to: &mut dyn Store,
    tag: &str,
) -> Result<String, FleetError> {
    let (chosen, _, digest) = top(from, reference)?;
    let (document, bytes, _) = manifest_bytes(from, &chosen, &digest, Some(&digest))?;
    let entries: Vec<Descriptor> = if document.is_index() {
        document.manifests.clone()
    } else {
        Vec::new()
    };
    for entry in &entries {
        let (inner, inner_bytes, _) =
            manifest_bytes(from, &chosen, &entry.digest, Some(&entry.digest))?;
        copy_manifest(from, &chosen, to, &inner, inner_bytes, entry.clone())?;
    }
    let top = Blob {
        descriptor: Descriptor {
            media_type: document
                .media_type
                .clone()
                .unwrap_or_else(|| super::artifact::MANIFEST_MEDIA_TYPE.to_owned()),
            digest: digest.clone(),
            size: bytes.len() as u64,
            platform: None,
            artifact_type: document.artifact_type.clone(),
            annotations: BTreeMap::new(),
        },
        bytes,
    };
    if entries.is_empty() {
        copy_manifest(
            from,
            &chosen,
            to,
            &document,
            top.bytes.clone(),
            top.descriptor.clone(),
        )?;
    }
    to.push_manifest(&top, Some(tag))?;
    Ok(digest)
}

fn copy_manifest(
    from: &mut dyn Store,
    reference: &ArtifactRef,
    to: &mut dyn Store,
    document: &Document,
    bytes: Vec<u8>,
    descriptor: Descriptor,
) -> Result<(), FleetError> {
    for layer in document.config.iter().chain(&document.layers) {
        let mut content = Vec::new();
        blob(
            from,
            reference,
            layer,
            "blob",
            &mut content,
            DEFAULT_MAX_LIBRARY_SIZE,
        )?;
        to.push_blob(&Blob {
            descriptor: layer.clone(),
            bytes: content,
        })?;
    }
    to.push_manifest(&Blob { descriptor, bytes }, None)
}

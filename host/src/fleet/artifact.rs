//! Airlock's artifact layout (`docs/oci.md`): one library as an OCI image manifest whose
//! config is the plugin's manifest JSON and whose layers are the library and its signature;
//! several targets as an image index with one entry per platform, read from each library's
//! embedded provenance.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::FleetError;
use crate::library::file::{hex, LibraryFile};
use crate::library::signature::SignatureStatus;

/// The artifact type of a plugin (the manifest's `artifactType`).
pub const ARTIFACT_TYPE: &str = "application/vnd.airlock.plugin.v1";
/// The config's media type: the plugin's manifest JSON, as embedded in the library.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.airlock.plugin.config.v1+json";
/// The library layer's media type.
pub const LIBRARY_MEDIA_TYPE: &str = "application/vnd.airlock.plugin.library.v1";
/// The signature layer's media type (minisign's format, the `.minisig` beside a library).
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.airlock.plugin.signature.v1";
/// An OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image index.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// The annotations Airlock writes (on the manifest, and on an index's entries).
pub mod annotations {
    /// The plugin's id.
    pub const ID: &str = "dev.airlock.plugin.id";
    /// The plugin's version.
    pub const VERSION: &str = "dev.airlock.plugin.version";
    /// The airlock-abi version the plugin was built against.
    pub const ABI: &str = "dev.airlock.plugin.abi";
    /// The target triple the library was built for (from its provenance).
    pub const TARGET: &str = "dev.airlock.plugin.target";
    /// The id of the minisign key that signed the library.
    pub const PUBLISHER: &str = "dev.airlock.plugin.publisher";
    /// A layer's file name (the OCI annotation ORAS uses).
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// The version (the OCI annotation).
    pub const OCI_VERSION: &str = "org.opencontainers.image.version";
    /// A tag in an OCI image layout's `index.json`.
    pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
}

/// A content descriptor (the OCI image spec's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// `sha256:` and its hash.
    pub digest: String,
    /// Its length in bytes.
    pub size: u64,
    /// An index entry's platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// An index entry's artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`, `darwin`, `windows`, …
    pub os: String,
    /// `v7` of `arm`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index, read leniently (another tool may add fields).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Document {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Document {
    pub(crate) fn is_index(&self) -> bool {
        self.media_type.as_deref() == Some(INDEX_MEDIA_TYPE)
            || (self.config.is_none() && !self.manifests.is_empty())
    }

    /// An Airlock plugin: its artifact type, or (a tool that does not write one) its config's
    /// media type, says so.
    pub(crate) fn is_plugin(&self) -> bool {
        self.artifact_type.as_deref() == Some(ARTIFACT_TYPE)
            || self.config.as_ref().map(|c| c.media_type.as_str()) == Some(CONFIG_MEDIA_TYPE)
    }
}

/// Bytes with their descriptor.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The descriptor.
    pub descriptor: Descriptor,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>, annotations: BTreeMap<String, String>) -> Self {
        Self {
            descriptor: Descriptor {
                media_type: media_type.to_owned(),
                digest: sha256_digest(&bytes),
                size: bytes.len() as u64,
                platform: None,
                artifact_type: None,
                annotations,
            },
            bytes,
        }
    }
}

/// One library made into an artifact: config, layers, and the manifest over them.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The library's target triple (its provenance).
    pub target: String,
    /// The config blob.
    pub config: Blob,
    /// The library, then its signature if it has one.
    pub layers: Vec<Blob>,
    /// The manifest.
    pub manifest: Blob,
}

/// Packs a library (read by stage 2, its signature examined) into an artifact.
///
/// # Errors
///
/// [`FleetError::Artifact`] if the library has no file name.
pub fn pack(file: &LibraryFile) -> Result<Packed, FleetError> {
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| FleetError::Artifact(format!("{}: no file name", file.path.display())))?;
    let block = &file.block;
    let manifest = &file.manifest;
    let title = |n: &str| BTreeMap::from([(annotations::TITLE.to_owned(), n.to_owned())]);
    let mut layers = vec![Blob::new(
        LIBRARY_MEDIA_TYPE,
        file.bytes().to_vec(),
        title(&name),
    )];
    if let Some(text) = file.signature_text() {
        layers.push(Blob::new(
            SIGNATURE_MEDIA_TYPE,
            text.as_bytes().to_vec(),
            title(&format!(
                "{name}.{}",
                crate::library::signature::SIGNATURE_SUFFIX
            )),
        ));
    }
    let config = Blob::new(
        CONFIG_MEDIA_TYPE,
        block.manifest_json.as_bytes().to_vec(),
        BTreeMap::new(),
    );
    let mut notes = BTreeMap::from([
        (annotations::ID.to_owned(), manifest.id.to_string()),
        (
            annotations::VERSION.to_owned(),
            manifest.version.to_string(),
        ),
        (
            annotations::OCI_VERSION.to_owned(),
            manifest.version.to_string(),
        ),
        (annotations::ABI.to_owned(), block.abi_version.clone()),
        (annotations::TARGET.to_owned(), block.target.clone()),
    ]);
    if let Some(key) = signing_key(&file.signature) {
        notes.insert(annotations::PUBLISHER.to_owned(), key.to_owned());
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": config.descriptor,
        "layers": layers.iter().map(|l| &l.descriptor).collect::<Vec<_>>(),
        "annotations": notes,
    });
    let mut manifest = Blob::new(MANIFEST_MEDIA_TYPE, to_bytes(&body), notes);
    manifest.descriptor.platform = Some(platform(&block.target));
    manifest.descriptor.artifact_type = Some(ARTIFACT_TYPE.to_owned());
    manifest.descriptor.annotations.retain(|k, _| {
        k == annotations::TARGET || k == annotations::ID || k == annotations::VERSION
    });
    Ok(Packed {
        target: block.target.clone(),
        config,
        layers,
        manifest,
    })
}

/// The image index over several packed libraries, one entry per target.
///
/// # Errors
///
/// [`FleetError::Artifact`] if two libraries are built for the same target or are different
/// plugins.
pub fn index(entries: &[Packed]) -> Result<Blob, FleetError> {
    let id = |p: &Packed| {
        p.manifest
            .descriptor
            .annotations
            .get(annotations::ID)
            .cloned()
    };
    for (n, a) in entries.iter().enumerate() {
        for b in &entries[n + 1..] {
            if a.target == b.target {
                return Err(FleetError::Artifact(format!(
                    "two libraries are built for {}: an index has one entry per target",
                    a.target
                )));
            }
            if id(a) != id(b) {
                return Err(FleetError::Artifact(format!(
                    "one tag holds one plugin: {} and {} are different plugins",
                    id(a).unwrap_or_default(),
                    id(b).unwrap_or_default()
                )));
            }
        }
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "manifests": entries.iter().map(|p| &p.manifest.descriptor).collect::<Vec<_>>(),
    });
    Ok(Blob::new(
        INDEX_MEDIA_TYPE,
        to_bytes(&body),
        BTreeMap::new(),
    ))
}

fn signing_key(status: &SignatureStatus) -> Option<&str> {
    match status {
        SignatureStatus::Verified { key_id, .. } | SignatureStatus::Untrusted { key_id } => {
            Some(key_id)
        }
        SignatureStatus::Invalid { key_id, .. } => key_id.as_deref(),
        SignatureStatus::Unsigned => None,
    }
}

fn to_bytes(value: &serde_json::Value) -> Vec<u8> {
    // A `Value` always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `sha256:` and the hex SHA-256 of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The OCI platform of a Rust target triple (`x86_64-unknown-linux-gnu` → linux/amd64).
pub fn platform(triple: &str) -> Platform {
    let arch = triple.split('-').next().unwrap_or(triple);
    let (architecture, variant) = match arch {
        "x86_64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "i686" | "i586" | "i386" => ("386", None),
        a if a.starts_with("armv7") => ("arm", Some("v7")),
        a if a.starts_with("arm") => ("arm", None),
        a if a.starts_with("riscv64") => ("riscv64", None),
        "powerpc64le" => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    let os = [
        ("linux", "linux"),
        ("darwin", "darwin"),
        ("windows", "windows"),
        ("freebsd", "freebsd"),
        ("netbsd", "netbsd"),
        ("openbsd", "openbsd"),
        ("illumos", "illumos"),
        ("android", "android"),
    ]
    .iter()
    .find(|(part, _)| triple.split('-').any(|p| p == *part))
    .map_or("unknown", |(_, os)| os);
    Platform {
        architecture: architecture.to_owned(),
        os: os.to_owned(),
        variant: variant.map(str::to_owned),
    }
}

/// The index entry for `target`: by the target annotation Airlock writes, or else (an index
/// another tool made) by the OCI platform.
///
/// # Errors
///
/// [`FleetError::NoPlatform`] naming the targets the index has.
pub(crate) fn entry_for<'d>(
    reference: &str,
    index: &'d Document,
    target: &str,
) -> Result<&'d Descriptor, FleetError> {
    let exact = index
        .manifests
        .iter()
        .find(|m| m.annotations.get(annotations::TARGET).map(String::as_str) == Some(target));
    let ours = platform(target);
    exact
        .or_else(|| {
            index.manifests.iter().find(|m| {
                !m.annotations.contains_key(annotations::TARGET)
                    && m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == ours.os && p.architecture == ours.architecture)
            })
        })
        .ok_or_else(|| FleetError::NoPlatform {
            reference: reference.to_owned(),
            target: target.to_owned(),
            present: index
                .manifests
                .iter()
                .map(|m| {
                    m.annotations
                        .get(annotations::TARGET)
                        .cloned()
                        .unwrap_or_else(|| {
                            m.platform.as_ref().map_or("no platform".into(), |p| {
                                format!("{}/{}", p.os, p.architecture)
                            })
                        })
                })
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_triples_map_to_oci_platforms() {
        for (triple, os, arch) in [
            ("x86_64-unknown-linux-gnu", "linux", "amd64"),
            ("aarch64-apple-darwin", "darwin", "arm64"),
            ("x86_64-pc-windows-msvc", "windows", "amd64"),
            ("armv7-unknown-linux-gnueabihf", "linux", "arm"),
        ] {
            let p = platform(triple);
            assert_eq!(
                (p.os.as_str(), p.architecture.as_str()),
                (os, arch),
                "{triple}"
            );
        }
    }

    #[test]
    fn an_index_entry_is_chosen_by_target_then_platform() {
        let entry = |target: Option<&str>, os: &str| Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.into(),
            digest: sha256_digest(os.as_bytes()),
            size: 1,
            platform: Some(Platform {
                architecture: "amd64".into(),
                os: os.into(),
                variant: None,
            }),
            artifact_type: None,
            annotations: target
                .map(|t| BTreeMap::from([(annotations::TARGET.to_owned(), t.to_owned())]))
                .unwrap_or_default(),
        };
        let index = Document {
            media_type: Some(INDEX_MEDIA_TYPE.into()),
            artifact_type: None,
            config: None,
            layers: vec![],
            manifests: vec![
                entry(Some("x86_64-unknown-linux-musl"), "linux"),
                entry(Some("x86_64-unknown-linux-gnu"), "linux"),
                entry(None, "windows"),
            ],
            annotations: BTreeMap::new(),
        };
        let gnu = entry_for("r", &index, "x86_64-unknown-linux-gnu").expect("gnu");
        assert_eq!(gnu, &index.manifests[1]);
        let windows = entry_for("r", &index, "x86_64-pc-windows-msvc").expect("by platform");
        assert_eq!(windows, &index.manifests[2]);
        let none = entry_for("r", &index, "aarch64-apple-darwin").expect_err("none");
        let text = none.to_string();
        assert!(
            text.contains("x86_64-unknown-linux-musl") && text.contains("windows/amd64"),
            "{text}"
        );
    }
}

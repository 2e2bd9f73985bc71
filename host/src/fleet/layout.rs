//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`): what
//! `airlock pull` writes and `install oci-layout:DIR:TAG` reads, for machines without a network.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::artifact::{annotations, Blob, Descriptor, Document, INDEX_MEDIA_TYPE};
use super::store::{Bounded, Store};
use super::{FleetError, MAX_MANIFEST_SIZE};

/// An OCI image layout.
#[derive(Debug)]
pub struct Layout {
    dir: PathBuf,
}

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";

impl Layout {
    /// Opens the layout in `dir`; with `create`, makes it if it is not there.
    ///
    /// # Errors
    ///
    /// [`FleetError::Artifact`] if `dir` is not a layout (and `create` is false), or
    /// [`FleetError::Io`].
    pub fn open(dir: &Path, create: bool) -> Result<Self, FleetError> {
        let marker = dir.join(LAYOUT_FILE);
        if !marker.exists() {
            if !create {
                return Err(FleetError::Artifact(format!(
                    "{}: not an OCI image layout (no {LAYOUT_FILE} file); make one with \
                     `airlock pull oci://… {}`",
                    dir.display(),
                    dir.display()
                )));
            }
            fs::create_dir_all(dir.join("blobs/sha256")).map_err(FleetError::io(dir))?;
            write_atomically(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            write_atomically(
                &dir.join(INDEX_FILE),
                json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []})
                    .to_string()
                    .as_bytes(),
            )?;
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, FleetError> {
        let hex = super::reference::check_digest(digest)
            .map_err(FleetError::Artifact)?
            .trim_start_matches("sha256:")
            .to_owned();
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    fn index(&self) -> Result<Document, FleetError> {
        let path = self.dir.join(INDEX_FILE);
        let bytes = fs::read(&path).map_err(FleetError::io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            FleetError::Artifact(format!("{}: not an image index: {e}", path.display()))
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FleetError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(FleetError::io(dir))?;
    file.write_all(bytes).map_err(FleetError::io(path))?;
    file.as_file().sync_all().map_err(FleetError::io(path))?;
    file.persist(path).map_err(|e| FleetError::Io {
        path: path.to_owned(),
        source: e.error,
    })?;
    Ok(())
}

impl Store for Layout {
    fn manifest(&mut self, reference: &str) -> Result<Vec<u8>, FleetError> {
        let digest = if reference.starts_with("sha256:") {
            reference.to_owned()
        } else {
            self.index()?
                .manifests
                .iter()
                .find(|m| {
                    m.annotations.get(annotations::REF_NAME).map(String::as_str) == Some(reference)
                })
                .map(|m| m.digest.clone())
                .ok_or_else(|| FleetError::Registry {
                    reference: format!("oci-layout:{}", self.dir.display()),
                    step: format!("finding tag {reference}"),
                    message: "no such tag in index.json".to_owned(),
                })?
        };
        let path = self.blob_path(&digest)?;
        let mut bytes = Vec::new();
        let mut bounded = Bounded {
            out: &mut bytes,
            left: MAX_MANIFEST_SIZE,
        };
        std::io::copy(
            &mut fs::File::open(&path).map_err(FleetError::io(&path))?,
            &mut bounded,
        )
        .map_err(FleetError::io(&path))?;
        Ok(bytes)
    }

    fn blob(
        &mut self,
        descriptor: &Descriptor,
        out: &mut dyn Write,
        max: u64,
    ) -> Result<(), FleetError> {
        let path = self.blob_path(&descriptor.digest)?;
        let mut file = fs::File::open(&path).map_err(FleetError::io(&path))?;
        std::io::copy(&mut file, &mut Bounded { out, left: max }).map_err(FleetError::io(&path))?;
        Ok(())
    }

    fn tags(&mut self) -> Result<Vec<String>, FleetError> {
        Ok(self
            .index()?
            .manifests
            .iter()
            .filter_map(|m| m.annotations.get(annotations::REF_NAME).cloned())
            .collect())
    }

    fn push_blob(&mut self, blob: &Blob) -> Result<(), FleetError> {
        let path = self.blob_path(&blob.descriptor.digest)?;
        if !path.exists() {
            write_atomically(&path, &blob.bytes)?;
        }
        Ok(())
    }

    fn push_manifest(&mut self, manifest: &Blob, tag: Option<&str>) -> Result<(), FleetError> {
        self.push_blob(manifest)?;
        let Some(tag) = tag else {
            return Ok(());
        };
        let mut index = self.index()?;
        index
            .manifests
            .retain(|m| m.annotations.get(annotations::REF_NAME).map(String::as_str) != Some(tag));
        let mut entry = manifest.descriptor.clone();
        entry
            .annotations
            .insert(annotations::REF_NAME.to_owned(), tag.to_owned());
        index.manifests.push(entry);
        let body = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": index.manifests,
        });
        write_atomically(&self.dir.join(INDEX_FILE), body.to_string().as_bytes())
    }
}

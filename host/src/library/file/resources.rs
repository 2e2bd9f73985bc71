//! Stage 2 for the files a plugin ships inside its library (`"resources"` in `plugin.json`):
//! the declarations, the resource block's index and its bytes must agree, and the manifest
//! block must vouch for the resource block (its BLAKE3) — all checked from the bytes read,
//! before anything runs. What passes is copied out of those bytes and kept with the plugin, so
//! the host program reads exactly what was checked, never the file again and never the
//! plugin's memory.

use std::sync::Arc;

use airlock_abi::abi::{ManifestBlock, ResourceBlock};
use airlock_abi::manifest::Manifest;

/// What to do about a library whose resources do not agree with its manifest.
const REBUILD: &str =
    "rebuild the plugin with airlock_build::embed_resources() in its build.rs and export_plugin!(Plugin, resources)";

/// One file a plugin ships inside its library, as the host checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resource {
    /// Its path in the plugin crate, as declared (`skills/summarize.md`).
    pub path: String,
    /// Its media type, as declared (`text/markdown`).
    pub media_type: String,
    /// What it is for, as declared (may be empty).
    pub description: String,
    /// BLAKE3 of its bytes, lower-case hex.
    pub blake3: String,
    /// Its bytes, as read from the library file and checked in stage 2.
    pub bytes: Arc<[u8]>,
}

impl Resource {
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Its bytes as UTF-8 text, if they are.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }
}

/// The resources of a library file: `section` is its resource section's contents, if it has
/// one. Every disagreement is refused with a message naming the resource and what to do.
pub(super) fn check_file(
    manifest: &Manifest,
    block: &ManifestBlock,
    section: Option<&[u8]>,
) -> Result<Vec<Resource>, String> {
    let (digest, section) = match (&block.resources_blake3, section) {
        (None, None) => return check_block(manifest, None),
        (None, Some(_)) => {
            return Err(format!(
                "the library has a resource section its manifest block does not vouch for (a version 1 block): {REBUILD}"
            ))
        }
        (Some(_), None) => {
            return Err(format!(
                "the manifest block names a resource block, but the library has no resource section (it was stripped or changed after the build): {REBUILD}"
            ))
        }
        (Some(digest), Some(section)) => (digest, section),
    };
    let resources = check_block(manifest, Some(section))?;
    // Checked after the resources themselves, so that a changed file names the resource.
    let len = ResourceBlock::parse(section).map_or(section.len(), |b| b.len);
    let actual = blake3::hash(&section[..len]).to_hex();
    if actual.as_str() != digest {
        return Err(format!(
            "the resource block's BLAKE3 is {actual}, not the {digest} its manifest block gives: the library was changed after it was built; {REBUILD}"
        ));
    }
    Ok(resources)
}

/// The resources of `block` (an encoded resource block, or none) checked against what
/// `manifest` declares: the one check for a library file and for a built-in plugin.
pub(crate) fn check_block(
    manifest: &Manifest,
    block: Option<&[u8]>,
) -> Result<Vec<Resource>, String> {
    let Some(bytes) = block else {
        return match manifest.resources.first() {
            None => Ok(Vec::new()),
            Some(first) => Err(format!(
                "plugin.json declares {} resource(s) (the first is {:?}) but the library embeds none: {REBUILD}",
                manifest.resources.len(),
                first.path
            )),
        };
    };
    let parsed = ResourceBlock::parse(bytes).map_err(|e| format!("resource block: {e}"))?;
    for entry in &parsed.entries {
        if *blake3::hash(&bytes[entry.range.clone()]).as_bytes() != entry.blake3 {
            return Err(format!(
                "resource {:?}: its bytes do not match the BLAKE3 recorded for them in the resource block (the library was changed after it was built): {REBUILD}",
                entry.path
            ));
        }
    }
    let mut resources = Vec::with_capacity(manifest.resources.len());
    for decl in &manifest.resources {
        let Some(entry) = parsed.entries.iter().find(|e| e.path == decl.path) else {
            return Err(format!(
                "resource {:?} is declared in plugin.json but the library does not embed it: {REBUILD}",
                decl.path
            ));
        };
        if entry.media_type != decl.media_type {
            return Err(format!(
                "resource {:?}: plugin.json gives media type {:?}, the embedded index {:?}: {REBUILD}",
                decl.path, decl.media_type, entry.media_type
            ));
        }
        resources.push(Resource {
            path: decl.path.clone(),
            media_type: decl.media_type.clone(),
            description: decl.description.clone(),
            blake3: crate::library::file::hex(&entry.blake3),
            bytes: Arc::from(&bytes[entry.range.clone()]),
        });
    }
    if let Some(extra) = parsed
        .entries
        .iter()
        .find(|e| !manifest.resources.iter().any(|d| d.path == e.path))
    {
        return Err(format!(
            "the library embeds resource {:?}, which plugin.json does not declare: {REBUILD}",
            extra.path
        ));
    }
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(resources: &str) -> Manifest {
        Manifest::from_json(&format!(
            r#"{{"id":"p","version":"1.0.0","resources":{resources}}}"#
        ))
        .expect("valid")
    }

    fn block_of(items: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let input: Vec<_> = items
            .iter()
            .map(|(p, m, b)| (*p, *m, *blake3::hash(b).as_bytes(), *b))
            .collect();
        ResourceBlock::encode(&input).expect("encodes")
    }

    #[test]
    fn declarations_index_and_bytes_must_agree() {
        let m = manifest(r#"[{"path":"a.md","media_type":"text/markdown"}]"#);
        let ok =
            check_block(&m, Some(&block_of(&[("a.md", "text/markdown", b"hi")]))).expect("agrees");
        assert_eq!(ok[0].bytes.as_ref(), b"hi");
        assert_eq!(ok[0].blake3, blake3::hash(b"hi").to_hex().as_str());
        for (block, says) in [
            (block_of(&[]), "does not embed it"),
            (block_of(&[("a.md", "text/plain", b"hi")]), "media type"),
            (
                block_of(&[("a.md", "text/markdown", b"hi"), ("b", "x/y", b"")]),
                "does not declare",
            ),
        ] {
            let e = check_block(&m, Some(&block)).expect_err(says);
            assert!(e.contains(says) && e.contains("embed_resources"), "{e}");
        }
        let mut tampered = block_of(&[("a.md", "text/markdown", b"hi")]);
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let e = check_block(&m, Some(&tampered)).expect_err("tampered");
        assert!(e.contains("\"a.md\"") && e.contains("BLAKE3"), "{e}");
        let e = check_block(&m, None).expect_err("none embedded");
        assert!(e.contains("embeds none"), "{e}");
        assert!(check_block(&manifest("[]"), None).expect("none").is_empty());
    }
}

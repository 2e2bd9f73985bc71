//! The resource block: the files a plugin ships inside its library (`"resources"` in
//! `plugin.json`), written by the crate's build script (`airlock_build::embed_resources`) and
//! placed by `export_plugin!(Plugin, resources)` in a section of its own (`.airres` on ELF and
//! PE, `__DATA,__airres` on Mach-O), which the host reads from the file without running it.
//!
//! A library without resources has no such section, and hosts that predate it never look for
//! one. All integers are little-endian:
//!
//! ```text
//! offset  size  field
//! 0       8     magic            b"AIRRES\0\x01"
//! 8       2     header version   1
//! 10      2     count            resources in the index (at most MAX_RESOURCES)
//! 12      4     total length     of the whole block: header, index and bytes
//! 16      ...   the index, one entry per resource:
//!               u16 length + path (UTF-8), u16 length + media type (UTF-8),
//!               u32 length of its bytes, 32 bytes BLAKE3 of its bytes
//! ...     ...   each resource's bytes, in index order, back to back
//! ```
//!
//! Reading is hostile-input code: every length is bounded before it is used, and nothing
//! panics, whatever the bytes.

use std::fmt;
use std::ops::Range;

use crate::manifest::{check_resource_path, MAX_MEDIA_TYPE, MAX_RESOURCES, MAX_RESOURCE_BYTES};

/// The first eight bytes of every resource block.
pub const RESOURCE_MAGIC: [u8; 8] = *b"AIRRES\0\x01";
/// The version of the resource block layout described in this module.
pub const RESOURCE_HEADER_VERSION: u16 = 1;
/// The section the resource block is placed in on ELF and PE targets.
pub const RESOURCE_SECTION: &str = ".airres";
/// The section the resource block is placed in on Mach-O targets (segment `__DATA`).
pub const RESOURCE_SECTION_MACHO: &str = "__airres";
/// The file the build script writes into `OUT_DIR` and `export_plugin!` embeds.
pub const RESOURCE_BLOB_FILE: &str = "airlock-resources.bin";
/// The file beside it holding the block's BLAKE3 (64 lower-case hex digits), which
/// `export_plugin!` writes into the manifest block so that it vouches for the resources.
pub const RESOURCE_DIGEST_FILE: &str = "airlock-resources.blake3";

const HEADER_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// The largest resource block a reader accepts: the bytes' cap plus the largest index.
pub const MAX_RESOURCE_BLOCK_LEN: usize =
    HEADER_LEN + MAX_RESOURCES * (2 + 256 + 2 + MAX_MEDIA_TYPE + 4 + HASH_LEN) + MAX_RESOURCE_BYTES;

/// One resource as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceEntry {
    /// Its path, as declared in `plugin.json`.
    pub path: String,
    /// Its media type, as declared.
    pub media_type: String,
    /// The BLAKE3 of its bytes, as the build script computed it.
    pub blake3: [u8; HASH_LEN],
    /// Where its bytes are, inside the block.
    pub range: Range<usize>,
}

/// A resource block, checked for structure (the hashes are the reader's to check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceBlock {
    /// The index, in order.
    pub entries: Vec<ResourceEntry>,
    /// The length of the block in bytes.
    pub len: usize,
}

/// Why bytes are not a well-formed resource block, or resources cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceBlockError(pub String);

impl fmt::Display for ResourceBlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ResourceBlockError {}

/// One resource to encode: its path, media type, the BLAKE3 of its bytes, and the bytes.
pub type ResourceInput<'a> = (&'a str, &'a str, [u8; HASH_LEN], &'a [u8]);

/// A cursor over the block that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ResourceBlockError> {
        let available = self.bytes.len() - self.pos;
        if n > available {
            return Err(ResourceBlockError(format!(
                "{what} claims {n} bytes but only {available} are left in the resource block"
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<usize, ResourceBlockError> {
        let b = self.take(2, what)?;
        Ok(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn u32(&mut self, what: &str) -> Result<usize, ResourceBlockError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn text(&mut self, max: usize, what: &str) -> Result<String, ResourceBlockError> {
        let len = self.u16(what)?;
        if len > max {
            return Err(ResourceBlockError(format!(
                "{what} is {len} bytes; at most {max} are allowed"
            )));
        }
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ResourceBlockError(format!("{what} is not valid UTF-8")))
    }
}

impl ResourceBlock {
    /// Parses a block from the start of `bytes` (a section's contents; trailing zero padding is
    /// allowed, anything else after the block is not).
    ///
    /// # Errors
    ///
    /// Any structural problem: a bad magic or version, a length past the end or past the caps,
    /// a path that breaks the manifest's rule, a path twice, bytes left over.
    pub fn parse(bytes: &[u8]) -> Result<Self, ResourceBlockError> {
        let err = |m: String| Err(ResourceBlockError(m));
        if bytes.len() < HEADER_LEN || bytes[..8] != RESOURCE_MAGIC {
            return err("the section does not start with the resource block's magic".to_owned());
        }
        let mut header = Reader { bytes, pos: 8 };
        let version = header.u16("the header version")?;
        if version != usize::from(RESOURCE_HEADER_VERSION) {
            return err(format!(
                "resource block version {version} is not supported (this host reads version {RESOURCE_HEADER_VERSION})"
            ));
        }
        let count = header.u16("the count")?;
        let total = header.u32("the total length")?;
        if count > MAX_RESOURCES {
            return err(format!(
                "the index holds {count} resources; at most {MAX_RESOURCES} are allowed"
            ));
        }
        if total > bytes.len() || !(HEADER_LEN..=MAX_RESOURCE_BLOCK_LEN).contains(&total) {
            return err(format!(
                "the block claims {total} bytes; {} are present and at most {MAX_RESOURCE_BLOCK_LEN} allowed",
                bytes.len()
            ));
        }
        if bytes[total..].iter().any(|&b| b != 0) {
            return err("bytes other than padding follow the resource block".to_owned());
        }
        let mut reader = Reader {
            bytes: &bytes[..total],
            pos: HEADER_LEN,
        };
        let mut index: Vec<(String, String, usize, [u8; HASH_LEN])> = Vec::with_capacity(count);
        let mut sum = 0usize;
        for i in 0..count {
            let path = reader.text(256, &format!("the path of resource {i}"))?;
            check_resource_path(&path)
                .map_err(|e| ResourceBlockError(format!("resource {path:?}: {e}")))?;
            if index.iter().any(|(p, ..)| *p == path) {
                return err(format!("resource {path:?} is in the index twice"));
            }
            let media_type = reader.text(MAX_MEDIA_TYPE, &format!("the media type of {path:?}"))?;
            let len = reader.u32(&format!("the length of {path:?}"))?;
            sum = sum.saturating_add(len);
            if sum > MAX_RESOURCE_BYTES {
                return err(format!(
                    "the resources hold more than {MAX_RESOURCE_BYTES} bytes together"
                ));
            }
            let mut blake3 = [0; HASH_LEN];
            blake3.copy_from_slice(reader.take(HASH_LEN, &format!("the hash of {path:?}"))?);
            index.push((path, media_type, len, blake3));
        }
        let mut entries = Vec::with_capacity(count);
        for (path, media_type, len, blake3) in index {
            let start = reader.pos;
            reader.take(len, &format!("the bytes of {path:?}"))?;
            entries.push(ResourceEntry {
                path,
                media_type,
                blake3,
                range: start..reader.pos,
            });
        }
        if reader.pos != total {
            return err(format!(
                "the resources leave {} unexplained bytes inside the block's length",
                total - reader.pos
            ));
        }
        Ok(Self {
            entries,
            len: total,
        })
    }

    /// Encodes resources as a block (what the crate's build script writes).
    ///
    /// # Errors
    ///
    /// A path that breaks the manifest's rule or is given twice, a media type too long, or
    /// more resources or bytes than the caps allow.
    pub fn encode(resources: &[ResourceInput<'_>]) -> Result<Vec<u8>, ResourceBlockError> {
        let err = |m: String| Err(ResourceBlockError(m));
        if resources.len() > MAX_RESOURCES {
            return err(format!(
                "{} resources; at most {MAX_RESOURCES} are allowed",
                resources.len()
            ));
        }
        let sum: usize = resources.iter().map(|r| r.3.len()).sum();
        if sum > MAX_RESOURCE_BYTES {
            return err(format!(
                "the resources hold {sum} bytes together; at most {MAX_RESOURCE_BYTES} are allowed"
            ));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + sum);
        out.extend_from_slice(&RESOURCE_MAGIC);
        out.extend_from_slice(&RESOURCE_HEADER_VERSION.to_le_bytes());
        out.extend_from_slice(&(resources.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        for (i, (path, media_type, hash, bytes)) in resources.iter().enumerate() {
            check_resource_path(path)
                .map_err(|e| ResourceBlockError(format!("resource {path:?}: {e}")))?;
            if resources[..i].iter().any(|r| r.0 == *path) {
                return err(format!("resource {path:?} is given twice"));
            }
            if media_type.len() > MAX_MEDIA_TYPE {
                return err(format!("resource {path:?}: the media type is too long"));
            }
            out.extend_from_slice(&(path.len() as u16).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&(media_type.len() as u16).to_le_bytes());
            out.extend_from_slice(media_type.as_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(hash);
        }
        for (.., bytes) in resources {
            out.extend_from_slice(bytes);
        }
        let total = out.len() as u32;
        out[12..16].copy_from_slice(&total.to_le_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        ResourceBlock::encode(&[
            ("skills/a.md", "text/markdown", [1; 32], b"alpha"),
            ("b.txt", "text/plain", [2; 32], b"bravo!"),
        ])
        .expect("encodes")
    }

    #[test]
    fn round_trips_with_padding() {
        let mut bytes = sample();
        let len = bytes.len();
        bytes.extend_from_slice(&[0; 7]);
        let block = ResourceBlock::parse(&bytes).expect("parses");
        assert_eq!(block.len, len);
        assert_eq!(block.entries.len(), 2);
        let a = &block.entries[0];
        assert_eq!(
            (a.path.as_str(), a.media_type.as_str()),
            ("skills/a.md", "text/markdown")
        );
        assert_eq!(&bytes[a.range.clone()], b"alpha");
        assert_eq!(&bytes[block.entries[1].range.clone()], b"bravo!");
        assert_eq!(block.entries[1].blake3, [2; 32]);
        let empty = ResourceBlock::encode(&[]).expect("encodes");
        assert!(ResourceBlock::parse(&empty)
            .expect("parses")
            .entries
            .is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(ResourceBlock::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn every_single_byte_change_is_handled_without_a_panic() {
        let bytes = sample();
        for i in 0..bytes.len() {
            for value in [0, 1, 0x7f, 0xff] {
                let mut changed = bytes.clone();
                changed[i] = value;
                let _ = ResourceBlock::parse(&changed);
            }
        }
    }

    #[test]
    fn lying_lengths_and_oversized_indexes_are_refused() {
        let mut bytes = sample();
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(ResourceBlock::parse(&bytes)
            .expect_err("total")
            .0
            .contains("claims"));
        let mut bytes = sample();
        bytes[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(ResourceBlock::parse(&bytes)
            .expect_err("count")
            .0
            .contains("at most"));
        let mut bytes = sample();
        bytes[10..12].copy_from_slice(&3u16.to_le_bytes());
        assert!(
            ResourceBlock::parse(&bytes).is_err(),
            "a third entry that is not there"
        );
        let mut bytes = sample();
        bytes[10..12].copy_from_slice(&1u16.to_le_bytes());
        let e = ResourceBlock::parse(&bytes).expect_err("one entry too few");
        assert!(e.0.contains("unexplained"), "{e}");
        let mut bytes = sample();
        bytes.push(1);
        assert!(ResourceBlock::parse(&bytes)
            .expect_err("garbage")
            .0
            .contains("padding"));
        let mut bytes = sample();
        bytes[8] = 2;
        assert!(ResourceBlock::parse(&bytes)
            .expect_err("version")
            .0
            .contains("version 2"));
    }

    #[test]
    fn hostile_paths_in_the_index_are_refused() {
        let mut bytes = sample();
        // The first path, "skills/a.md", becomes "../..s/a.md".
        bytes[18..23].copy_from_slice(b"../..");
        let e = ResourceBlock::parse(&bytes).expect_err("escaping path");
        assert!(e.0.contains(".."), "{e}");
        let twice =
            ResourceBlock::encode(&[("a", "x/y", [0; 32], b""), ("a", "x/y", [0; 32], b"")]);
        assert!(twice.is_err());
        let big = vec![0u8; MAX_RESOURCE_BYTES + 1];
        assert!(ResourceBlock::encode(&[("a", "x/y", [0; 32], &big)]).is_err());
    }
}

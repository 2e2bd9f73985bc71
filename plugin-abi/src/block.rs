//! The manifest block a plugin embeds in its library file, readable without running the library.
//!
//! The block lives in its own section (`.airlock` on ELF and PE, `__DATA,__airlock` on Mach-O).
//! All integers are little-endian:
//!
//! ```text
//! offset  size  field
//! 0       8     magic            b"AIRLOCK\x01"
//! 8       2     header version   1, or 2 for a plugin that ships resources
//! 10      2     reserved         0
//! 12      4     total length     of the whole block, header included
//! 16      ...   five fields, each a u32 length then that many bytes of UTF-8:
//!               airlock-abi version, rustc version, target triple, panic strategy,
//!               the author's plugin.json
//!               version 2 only: a sixth field, the BLAKE3 (64 lower-case hex digits) of
//!               the library's resource block (`resource_block.rs`)
//! ```
//!
//! Version 2 is written only by `export_plugin!(Plugin, resources)`, so a plugin without
//! resources keeps the layout every host reads; a host that knows only version 1 refuses a
//! plugin with resources with a message naming the version, rather than misreading it.
//!
//! The same bytes are reported by the loaded library through the root module, so the host can
//! check that what it read from the file is what it loaded.

use std::fmt;

/// The first eight bytes of every manifest block.
pub const BLOCK_MAGIC: [u8; 8] = *b"AIRLOCK\x01";
/// The version of the block layout described in this module (of a plugin without resources).
pub const BLOCK_HEADER_VERSION: u16 = 1;
/// The version of a block that also vouches for a resource block (its sixth field).
pub const BLOCK_HEADER_VERSION_RESOURCES: u16 = 2;
/// The section the block is placed in on ELF and PE targets (PE names have at most 8 bytes).
pub const BLOCK_SECTION: &str = ".airlock";
/// The section the block is placed in on Mach-O targets (segment `__DATA`).
pub const BLOCK_SECTION_MACHO: &str = "__airlock";
/// The largest manifest block the host accepts.
pub const MAX_BLOCK_LEN: usize = 1 << 20;

const HEADER_LEN: usize = 16;
const FIELD_COUNT: usize = 5;

/// The length of a block holding these five fields (or six, with the resource digest).
///
/// Used by `export_plugin!` to size the static array at compile time.
#[doc(hidden)]
pub const fn block_len(fields: &[&[u8]]) -> usize {
    let mut len = HEADER_LEN;
    let mut i = 0;
    while i < fields.len() {
        len += 4 + fields[i].len();
        i += 1;
    }
    len
}

/// Builds a block at compile time. `N` must equal `block_len(fields)`; five fields make a
/// version 1 block, six (the last one the resource block's digest) a version 2 block.
#[doc(hidden)]
pub const fn build_block<const N: usize>(fields: &[&[u8]]) -> [u8; N] {
    assert!(N == block_len(fields), "manifest block length mismatch");
    assert!(
        fields.len() == FIELD_COUNT || fields.len() == FIELD_COUNT + 1,
        "a manifest block has five fields, or six with resources"
    );
    assert!(
        N <= MAX_BLOCK_LEN,
        "plugin.json is too large for the manifest block"
    );
    let mut out = [0u8; N];
    let mut pos = 0;
    while pos < BLOCK_MAGIC.len() {
        out[pos] = BLOCK_MAGIC[pos];
        pos += 1;
    }
    let version = if fields.len() == FIELD_COUNT {
        BLOCK_HEADER_VERSION
    } else {
        BLOCK_HEADER_VERSION_RESOURCES
    }
    .to_le_bytes();
    out[8] = version[0];
    out[9] = version[1];
    let total = (N as u32).to_le_bytes();
    out[12] = total[0];
    out[13] = total[1];
    out[14] = total[2];
    out[15] = total[3];
    pos = HEADER_LEN;
    let mut i = 0;
    while i < fields.len() {
        let field = fields[i];
        let len = (field.len() as u32).to_le_bytes();
        out[pos] = len[0];
        out[pos + 1] = len[1];
        out[pos + 2] = len[2];
        out[pos + 3] = len[3];
        pos += 4;
        let mut j = 0;
        while j < field.len() {
            out[pos] = field[j];
            pos += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

/// A manifest block, parsed and checked for structure (not yet for meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBlock {
    /// The airlock-abi version the plugin was built against.
    pub abi_version: String,
    /// `rustc -V` of the compiler that built the plugin.
    pub rustc: String,
    /// The target triple the plugin was built for.
    pub target: String,
    /// `unwind` or `abort`.
    pub panic: String,
    /// The author's plugin.json, verbatim.
    pub manifest_json: String,
    /// The BLAKE3 of the library's resource block (lower-case hex), in a version 2 block: the
    /// manifest block vouches for the resources. `None` for a plugin without resources.
    pub resources_blake3: Option<String>,
    /// The length of the block in bytes.
    pub len: usize,
}

/// Why a byte range is not a well-formed manifest block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// The bytes do not start with [`BLOCK_MAGIC`].
    BadMagic,
    /// The header names a layout this reader does not know.
    UnsupportedHeaderVersion(u16),
    /// The block or one of its fields claims more bytes than there are.
    LengthOutOfBounds {
        /// Which part of the block.
        field: &'static str,
        /// The length it claims.
        claimed: usize,
        /// The bytes actually available.
        available: usize,
    },
    /// A field is not valid UTF-8.
    NotUtf8(&'static str),
    /// The block's declared length disagrees with its fields.
    TrailingBytes(usize),
    /// A second block follows the first one.
    Duplicated,
    /// A version 2 block's resource digest is not 64 lower-case hex digits.
    BadResourceDigest,
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "the section does not start with the airlock magic"),
            Self::UnsupportedHeaderVersion(v) => write!(
                f,
                "manifest header version {v} is not supported (this host reads versions {BLOCK_HEADER_VERSION} and {BLOCK_HEADER_VERSION_RESOURCES})"
            ),
            Self::LengthOutOfBounds {
                field,
                claimed,
                available,
            } => write!(
                f,
                "{field} claims {claimed} bytes but only {available} are present"
            ),
            Self::NotUtf8(field) => write!(f, "{field} is not valid UTF-8"),
            Self::TrailingBytes(n) => {
                write!(f, "the block's fields leave {n} unexplained bytes inside its length")
            }
            Self::Duplicated => write!(f, "the section holds more than one manifest block"),
            Self::BadResourceDigest => write!(
                f,
                "the resource digest is not 64 lower-case hex digits (a BLAKE3)"
            ),
        }
    }
}

impl std::error::Error for BlockError {}

const FIELD_NAMES: [&str; FIELD_COUNT] = [
    "abi version",
    "rustc version",
    "target triple",
    "panic strategy",
    "plugin.json",
];
const DIGEST_FIELD: &str = "resource digest";

impl ManifestBlock {
    /// Encodes the block (the runtime twin of what `export_plugin!` builds at compile time; for
    /// tools and tests that write libraries).
    pub fn encode(&self) -> Vec<u8> {
        let mut fields = vec![
            self.abi_version.as_bytes(),
            self.rustc.as_bytes(),
            self.target.as_bytes(),
            self.panic.as_bytes(),
            self.manifest_json.as_bytes(),
        ];
        let mut version = BLOCK_HEADER_VERSION;
        if let Some(digest) = &self.resources_blake3 {
            fields.push(digest.as_bytes());
            version = BLOCK_HEADER_VERSION_RESOURCES;
        }
        let total = block_len(&fields);
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&BLOCK_MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes());
        for field in fields {
            out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Parses a block from the start of `bytes` (a section's contents; trailing zero padding is
    /// allowed, a second block is not).
    ///
    /// # Errors
    ///
    /// Any structural problem, as a [`BlockError`].
    pub fn parse(bytes: &[u8]) -> Result<Self, BlockError> {
        if bytes.len() < HEADER_LEN || bytes[..8] != BLOCK_MAGIC {
            return Err(BlockError::BadMagic);
        }
        let header_version = u16::from_le_bytes([bytes[8], bytes[9]]);
        let field_count = match header_version {
            BLOCK_HEADER_VERSION => FIELD_COUNT,
            BLOCK_HEADER_VERSION_RESOURCES => FIELD_COUNT + 1,
            other => return Err(BlockError::UnsupportedHeaderVersion(other)),
        };
        let total = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        if total > bytes.len() || !(HEADER_LEN..=MAX_BLOCK_LEN).contains(&total) {
            return Err(BlockError::LengthOutOfBounds {
                field: "block",
                claimed: total,
                available: bytes.len().min(MAX_BLOCK_LEN),
            });
        }
        let block = &bytes[..total];
        let mut pos = HEADER_LEN;
        let mut fields: [String; FIELD_COUNT + 1] = Default::default();
        let names = FIELD_NAMES.iter().chain([&DIGEST_FIELD]);
        for (slot, &name) in fields.iter_mut().zip(names).take(field_count) {
            let available = block.len() - pos;
            if available < 4 {
                return Err(BlockError::LengthOutOfBounds {
                    field: name,
                    claimed: 4,
                    available,
                });
            }
            let len =
                u32::from_le_bytes([block[pos], block[pos + 1], block[pos + 2], block[pos + 3]])
                    as usize;
            pos += 4;
            let available = block.len() - pos;
            if len > available {
                return Err(BlockError::LengthOutOfBounds {
                    field: name,
                    claimed: len,
                    available,
                });
            }
            *slot = std::str::from_utf8(&block[pos..pos + len])
                .map_err(|_| BlockError::NotUtf8(name))?
                .to_owned();
            pos += len;
        }
        if pos != total {
            return Err(BlockError::TrailingBytes(total - pos));
        }
        let rest = &bytes[total..];
        if rest.windows(BLOCK_MAGIC.len()).any(|w| w == BLOCK_MAGIC) {
            return Err(BlockError::Duplicated);
        }
        let [abi_version, rustc, target, panic, manifest_json, digest] = fields;
        let resources_blake3 = (field_count > FIELD_COUNT).then_some(digest);
        if let Some(digest) = &resources_blake3 {
            if digest.len() != 64
                || !digest
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(BlockError::BadResourceDigest);
            }
        }
        Ok(Self {
            abi_version,
            rustc,
            target,
            panic,
            manifest_json,
            resources_blake3,
            len: total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [&[u8]; 5] = [
        b"0.1.0",
        b"rustc 1.0.0",
        b"x86_64-unknown-linux-gnu",
        b"unwind",
        b"{}",
    ];

    fn sample() -> Vec<u8> {
        const N: usize = block_len(&FIELDS);
        build_block::<N>(&FIELDS).to_vec()
    }

    #[test]
    fn round_trips_with_padding() {
        let mut bytes = sample();
        bytes.extend_from_slice(&[0; 13]);
        let block = ManifestBlock::parse(&bytes).expect("parses");
        assert_eq!(block.abi_version, "0.1.0");
        assert_eq!(block.target, "x86_64-unknown-linux-gnu");
        assert_eq!(block.manifest_json, "{}");
        assert_eq!(block.len, sample().len());
    }

    #[test]
    fn runtime_encoding_equals_the_compile_time_one() {
        let block = ManifestBlock::parse(&sample()).expect("parses");
        assert_eq!(block.encode(), sample());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(ManifestBlock::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn lying_total_length_is_refused() {
        let mut bytes = sample();
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            ManifestBlock::parse(&bytes),
            Err(BlockError::LengthOutOfBounds { field: "block", .. })
        ));
    }

    #[test]
    fn lying_field_length_is_refused() {
        let mut bytes = sample();
        bytes[16..20].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            ManifestBlock::parse(&bytes),
            Err(BlockError::LengthOutOfBounds {
                field: "abi version",
                ..
            })
        ));
    }

    #[test]
    fn duplicated_block_is_refused() {
        let mut bytes = sample();
        bytes.extend_from_slice(&sample());
        assert_eq!(ManifestBlock::parse(&bytes), Err(BlockError::Duplicated));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] = 0xff;
        assert_eq!(
            ManifestBlock::parse(&bytes),
            Err(BlockError::NotUtf8("plugin.json"))
        );
    }

    #[test]
    fn unknown_header_version_is_refused() {
        let mut bytes = sample();
        bytes[8] = 3;
        assert_eq!(
            ManifestBlock::parse(&bytes),
            Err(BlockError::UnsupportedHeaderVersion(3))
        );
    }

    #[test]
    fn a_block_with_resources_is_version_2_and_carries_the_digest() {
        const DIGEST: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        const SIX: [&[u8]; 6] = [
            FIELDS[0], FIELDS[1], FIELDS[2], FIELDS[3], FIELDS[4], DIGEST,
        ];
        const N: usize = block_len(&SIX);
        let bytes = build_block::<N>(&SIX);
        assert_eq!(bytes[8], 2, "version 2");
        let block = ManifestBlock::parse(&bytes).expect("parses");
        assert_eq!(
            block.resources_blake3.as_deref().map(str::as_bytes),
            Some(DIGEST)
        );
        assert_eq!(
            block.encode(),
            bytes.to_vec(),
            "the runtime encoding agrees"
        );
        assert_eq!(
            ManifestBlock::parse(&sample())
                .expect("v1")
                .resources_blake3,
            None
        );
        for cut in 0..bytes.len() {
            assert!(ManifestBlock::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A version 1 block relabelled 2 lacks the sixth field.
        let mut relabelled = sample();
        relabelled[8] = 2;
        assert!(ManifestBlock::parse(&relabelled).is_err());
        let mut not_hex = bytes.to_vec();
        let last = not_hex.len() - 1;
        not_hex[last] = b'G';
        assert!(ManifestBlock::parse(&not_hex).is_err());
    }
}

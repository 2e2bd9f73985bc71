//! Stage 2's structural checks, made on the bytes with the `object` crate: the file is a
//! shared library for this platform and architecture, whole (every loadable segment inside the
//! file), with exactly one manifest block.

use airlock_abi::abi::{
    ManifestBlock, BLOCK_MAGIC, BLOCK_SECTION, BLOCK_SECTION_MACHO, RESOURCE_SECTION,
    RESOURCE_SECTION_MACHO,
};
use object::{Object, ObjectSection, ObjectSegment};

use crate::error::RefusalReason;

pub(super) type Stage2Error = (RefusalReason, String);

/// What the structural checks found: the manifest block's bytes, the parsed block, where the
/// last loadable segment ends, and the resource section's contents if there is one.
pub(super) type Structure<'a> = (Vec<u8>, ManifestBlock, u64, Option<&'a [u8]>);

/// Which libraries stage 2 takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Platforms {
    /// Those this host can load: its format, architecture and pointer width.
    This,
    /// One built for any platform whose provenance names the file's own (publishing).
    Any,
}

/// Checks the object structure; returns what it found ([`Structure`]).
pub(super) fn check_object(
    bytes: &[u8],
    platforms: Platforms,
) -> Result<Structure<'_>, Stage2Error> {
    let format = detect_format(bytes, platforms)?;
    check_headers_inside(bytes)?;
    let obj = object::File::parse(bytes).map_err(|e| {
        (
            RefusalReason::NotALibrary,
            format!("the {format} file is malformed: {e}"),
        )
    })?;
    check_kind_and_architecture(&obj, format, platforms)?;
    let loadable_end = check_segments_inside(&obj, bytes.len())?;
    let (data, block) = manifest_block(&obj, format, bytes.len())?;
    if platforms == Platforms::Any {
        check_provenance(&obj, format, &block.target)?;
    }
    let resources = resource_section(&obj, format, bytes.len())?;
    Ok((data[..block.len].to_vec(), block, loadable_end, resources))
}

/// The resource section's contents (inside the file of `len` bytes), if the library has one;
/// more than one is refused.
fn resource_section<'data>(
    obj: &object::File<'data>,
    format: &str,
    len: usize,
) -> Result<Option<&'data [u8]>, Stage2Error> {
    let name = if format == "Mach-O" {
        RESOURCE_SECTION_MACHO
    } else {
        RESOURCE_SECTION
    };
    let mut found = obj.sections().filter(|s| s.name() == Ok(name));
    let Some(section) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err((
            RefusalReason::BadManifest,
            format!("more than one {name} section; a plugin has at most one resource block"),
        ));
    }
    let inside = section
        .file_range()
        .is_some_and(|(offset, size)| offset.saturating_add(size) <= len as u64);
    let data = section.data().ok().filter(|_| inside).ok_or_else(|| {
        (
            RefusalReason::Truncated,
            format!(
                "the {name} section lies past the end of the file ({len} bytes) or cannot be read"
            ),
        )
    })?;
    Ok(Some(data))
}

/// The headers' tables lie inside the file: a file cut short is `truncated`, not malformed.
fn check_headers_inside(bytes: &[u8]) -> Result<(), Stage2Error> {
    match claimed_header_extent(bytes) {
        Some(end) if end > bytes.len() as u64 => Err((
            RefusalReason::Truncated,
            format!(
                "the headers describe {end} bytes but the file has {}; it was cut short (a partial copy or an interrupted build)",
                bytes.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// A shared library, built for this host's architecture and pointer width (or any).
fn check_kind_and_architecture(
    obj: &object::File<'_>,
    format: &str,
    platforms: Platforms,
) -> Result<(), Stage2Error> {
    if obj.kind() != object::ObjectKind::Dynamic {
        return Err((
            RefusalReason::NotALibrary,
            format!(
                "the {format} file is not a shared library but {:?}",
                obj.kind()
            ),
        ));
    }
    if platforms == Platforms::Any {
        return Ok(());
    }
    let host_arch = host_architecture();
    if obj.architecture() != host_arch || obj.is_64() != cfg!(target_pointer_width = "64") {
        return Err((
            RefusalReason::BuildMismatch,
            format!(
                "built for {:?} ({}-bit); this host runs {host_arch:?} ({}-bit)",
                obj.architecture(),
                if obj.is_64() { 64 } else { 32 },
                usize::BITS
            ),
        ));
    }
    Ok(())
}

/// Every loadable segment inside the file (of `len` bytes); returns where the last one ends.
fn check_segments_inside(obj: &object::File<'_>, len: usize) -> Result<u64, Stage2Error> {
    let mut loadable_end = 0;
    for segment in obj.segments() {
        let (offset, size) = segment.file_range();
        loadable_end = loadable_end.max(offset.saturating_add(size));
        if offset.saturating_add(size) > len as u64 {
            return Err((
                RefusalReason::Truncated,
                format!(
                    "a loadable segment spans bytes {offset}..{} but the file has {len}; loading it would crash the process",
                    offset.saturating_add(size),
                ),
            ));
        }
    }
    Ok(loadable_end)
}

/// The one manifest section, inside the file (of `len` bytes), and the block it holds: its
/// bytes from the section's start, and the block parsed.
fn manifest_block<'data>(
    obj: &object::File<'data>,
    format: &str,
    len: usize,
) -> Result<(&'data [u8], ManifestBlock), Stage2Error> {
    let section_name = if format == "Mach-O" {
        BLOCK_SECTION_MACHO
    } else {
        BLOCK_SECTION
    };
    let sections: Vec<_> = obj
        .sections()
        .filter(|s| s.name() == Ok(section_name))
        .collect();
    let section = match sections.as_slice() {
        [] => {
            return Err((
                RefusalReason::NoManifest,
                format!(
                    "no {section_name} section: the library was not built with airlock_abi::export_plugin!"
                ),
            ))
        }
        [one] => one,
        _ => {
            return Err((
                RefusalReason::BadManifest,
                format!("{} {section_name} sections; a plugin has exactly one", sections.len()),
            ))
        }
    };
    if let Some((offset, size)) = section.file_range() {
        if offset.saturating_add(size) > len as u64 {
            return Err((
                RefusalReason::Truncated,
                format!("the manifest section lies past the end of the file ({len} bytes)"),
            ));
        }
    }
    let data = section.data().map_err(|e| {
        (
            RefusalReason::Truncated,
            format!("the manifest section cannot be read: {e}"),
        )
    })?;
    if !data.starts_with(&BLOCK_MAGIC) {
        return Err((
            RefusalReason::BadManifest,
            format!("the {section_name} section does not start with the manifest magic"),
        ));
    }
    let block = ManifestBlock::parse(data)
        .map_err(|e| (RefusalReason::BadManifest, format!("manifest block: {e}")))?;
    Ok((data, block))
}

/// A library built for any platform: its provenance must name the file's format and
/// architecture, or the index entry it is published as would be a lie.
fn check_provenance(obj: &object::File<'_>, format: &str, target: &str) -> Result<(), Stage2Error> {
    use object::Architecture as A;
    let parts: Vec<&str> = target.split('-').collect();
    let expected_format = if parts
        .iter()
        .any(|p| matches!(*p, "apple" | "darwin" | "ios"))
    {
        "Mach-O"
    } else if parts.contains(&"windows") {
        "PE"
    } else {
        "ELF"
    };
    let arch = parts.first().copied().unwrap_or_default();
    let expected_arch = match arch {
        "x86_64" => Some(A::X86_64),
        "aarch64" | "arm64" => Some(A::Aarch64),
        "i386" | "i586" | "i686" => Some(A::I386),
        "riscv64gc" | "riscv64" => Some(A::Riscv64),
        "s390x" => Some(A::S390x),
        "loongarch64" => Some(A::LoongArch64),
        "powerpc64" | "powerpc64le" => Some(A::PowerPc64),
        a if a.starts_with("arm") || a.starts_with("thumb") => Some(A::Arm),
        _ => None,
    };
    let arch_ok = expected_arch.is_none_or(|a| a == obj.architecture());
    if format != expected_format || !arch_ok {
        return Err((
            RefusalReason::BuildMismatch,
            format!(
                "the file is a {format} library for {:?}, but its provenance says it was built \
                 for {target}",
                obj.architecture()
            ),
        ));
    }
    Ok(())
}

fn detect_format(bytes: &[u8], platforms: Platforms) -> Result<&'static str, Stage2Error> {
    let format = match bytes {
        [0x7f, b'E', b'L', b'F', ..] => "ELF",
        [0xfe, 0xed, 0xfa, 0xce | 0xcf, ..] | [0xce | 0xcf, 0xfa, 0xed, 0xfe, ..] => "Mach-O",
        [b'M', b'Z', ..] => "PE",
        [] => return Err((RefusalReason::NotALibrary, "the file is empty".to_owned())),
        _ => {
            return Err((
                RefusalReason::NotALibrary,
                "not a shared library: no ELF, Mach-O or PE header".to_owned(),
            ))
        }
    };
    let native = if cfg!(target_vendor = "apple") {
        "Mach-O"
    } else if cfg!(windows) {
        "PE"
    } else {
        "ELF"
    };
    if format != native && platforms == Platforms::This {
        return Err((
            RefusalReason::NotALibrary,
            format!("a {format} file cannot be loaded on this platform, which uses {native}"),
        ));
    }
    Ok(format)
}

/// For ELF, the furthest byte the file header claims (program and section header tables), so
/// that a cut file is reported as `truncated` rather than as malformed.
fn claimed_header_extent(bytes: &[u8]) -> Option<u64> {
    use object::elf::{FileHeader32, FileHeader64, ELFCLASS32, ELFCLASS64};
    use object::read::elf::FileHeader;
    use object::Endianness;
    const HEADER_LEN_64: u64 = 64;
    const HEADER_LEN_32: u64 = 52;
    if bytes.len() < 5 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    let min = if bytes[4] == ELFCLASS64 {
        HEADER_LEN_64
    } else {
        HEADER_LEN_32
    };
    if (bytes.len() as u64) < min {
        return Some(min);
    }
    fn extent<H: FileHeader<Endian = Endianness>>(h: &H, data: &[u8]) -> Option<u64> {
        let e = h.endian().ok()?;
        let ph = h.e_phoff(e).into() + u64::from(h.e_phnum(e)) * u64::from(h.e_phentsize(e));
        let sh = h.e_shoff(e).into() + u64::from(h.e_shnum(e)) * u64::from(h.e_shentsize(e));
        let _ = data;
        Some(ph.max(sh))
    }
    match bytes[4] {
        ELFCLASS64 => FileHeader64::<Endianness>::parse(bytes)
            .ok()
            .and_then(|h| extent(h, bytes)),
        ELFCLASS32 => FileHeader32::<Endianness>::parse(bytes)
            .ok()
            .and_then(|h| extent(h, bytes)),
        _ => None,
    }
}

fn host_architecture() -> object::Architecture {
    use object::Architecture as A;
    match std::env::consts::ARCH {
        "x86_64" => A::X86_64,
        "x86" => A::I386,
        "aarch64" => A::Aarch64,
        "arm" => A::Arm,
        "riscv64" => A::Riscv64,
        "powerpc64" => A::PowerPc64,
        "s390x" => A::S390x,
        "loongarch64" => A::LoongArch64,
        _ => A::Unknown,
    }
}

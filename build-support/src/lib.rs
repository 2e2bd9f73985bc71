//! Build-script support for Airlock plugins: embeds the files a plugin declares as resources
//! (`"resources"` in `plugin.json`) into its library.
//!
//! A plugin crate that ships resources lists `airlock-build` under `[build-dependencies]`,
//! calls [`embed_resources`] from its `build.rs`, and exports itself with
//! `airlock_abi::export_plugin!(MyPlugin, resources)`:
//!
//! ```text
//! // build.rs
//! fn main() {
//!     airlock_build::embed_resources();
//! }
//! ```
//!
//! The build reads `plugin.json` (checked by the same rules the host applies), reads each
//! declared file, hashes it with BLAKE3, and writes the resource block into `OUT_DIR`, where
//! `export_plugin!` picks it up; cargo reruns it when `plugin.json` or a resource changes. The
//! host checks, from the file and before anything runs, that the declarations, the block's
//! index and its bytes agree; the library's own BLAKE3, which locks and signatures cover,
//! covers the resources with the code.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use airlock_abi::abi::{ResourceBlock, RESOURCE_BLOB_FILE, RESOURCE_DIGEST_FILE};
use airlock_abi::manifest::{Manifest, MAX_RESOURCE_BYTES};

/// Why the resources could not be embedded: which file, and what to do.
#[derive(Debug)]
pub struct EmbedError(String);

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EmbedError {}

/// What [`embed_resources_in`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// The resource block's file (its BLAKE3 is written beside it, for the manifest block).
    pub block: PathBuf,
    /// Every file it read (cargo reruns the build when one changes), `plugin.json` first.
    pub inputs: Vec<PathBuf>,
}

/// Embeds the resources `plugin.json` declares, for the crate cargo is building: call it from
/// `build.rs`. It prints `cargo:rerun-if-changed` for `plugin.json` and every resource.
///
/// # Panics
///
/// When a resource cannot be embedded (a missing file, a path that leaves the crate, more than
/// 16 MiB together) or `plugin.json` is invalid: the panic fails the build with a message naming
/// the file and the manifest. A build script reports failure that way.
pub fn embed_resources() {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!("{name} is not set: call airlock_build::embed_resources() from build.rs")
            })
    };
    let (crate_dir, out_dir) = (var("CARGO_MANIFEST_DIR"), var("OUT_DIR"));
    println!(
        "cargo:rerun-if-changed={}",
        crate_dir.join("plugin.json").display()
    );
    match embed_resources_in(&crate_dir, &out_dir) {
        Ok(embedded) => {
            for input in &embedded.inputs[1..] {
                println!("cargo:rerun-if-changed={}", input.display());
            }
        }
        Err(e) => panic!("{e}"),
    }
}

/// Embeds the resources declared by `crate_dir/plugin.json` into `out_dir`'s resource block.
///
/// # Errors
///
/// `plugin.json` cannot be read or is invalid; a declared file is missing, is not a regular
/// file, or lies outside `crate_dir` (through a symbolic link); the resources hold more than
/// 16 MiB together; the block cannot be written.
pub fn embed_resources_in(crate_dir: &Path, out_dir: &Path) -> Result<Embedded, EmbedError> {
    let manifest_path = crate_dir.join("plugin.json");
    let text = fs::read_to_string(&manifest_path)
        .map_err(|e| EmbedError(format!("cannot read {}: {e}", manifest_path.display())))?;
    let manifest = Manifest::from_json(&text)
        .map_err(|e| EmbedError(format!("{}: {e}", manifest_path.display())))?;
    let root = crate_dir
        .canonicalize()
        .map_err(|e| EmbedError(format!("cannot resolve {}: {e}", crate_dir.display())))?;
    let mut inputs = vec![manifest_path.clone()];
    let mut files = Vec::with_capacity(manifest.resources.len());
    let mut total = 0usize;
    for decl in &manifest.resources {
        let named = |m: String| {
            EmbedError(format!(
                "resource {:?} declared in {}: {m}",
                decl.path,
                manifest_path.display()
            ))
        };
        let file = crate_dir.join(&decl.path);
        let real = file.canonicalize().map_err(|e| {
            named(format!(
                "cannot read {}: {e} (add the file, or remove it from \"resources\")",
                file.display()
            ))
        })?;
        if !real.starts_with(&root) {
            return Err(named(format!(
                "{} leads outside the crate (to {}); a resource must be a file of the crate",
                file.display(),
                real.display()
            )));
        }
        if !real.is_file() {
            return Err(named(format!("{} is not a regular file", file.display())));
        }
        let bytes =
            fs::read(&real).map_err(|e| named(format!("cannot read {}: {e}", file.display())))?;
        total = total.saturating_add(bytes.len());
        if total > MAX_RESOURCE_BYTES {
            return Err(named(format!(
                "the resources hold more than {MAX_RESOURCE_BYTES} bytes together; ship large files beside the library instead"
            )));
        }
        let hash = *blake3::hash(&bytes).as_bytes();
        inputs.push(file);
        files.push((decl, hash, bytes));
    }
    let input: Vec<_> = files
        .iter()
        .map(|(d, hash, bytes)| {
            (
                d.path.as_str(),
                d.media_type.as_str(),
                *hash,
                bytes.as_slice(),
            )
        })
        .collect();
    let block = ResourceBlock::encode(&input)
        .map_err(|e| EmbedError(format!("{}: {e}", manifest_path.display())))?;
    let digest = blake3::hash(&block).to_hex();
    let target = out_dir.join(RESOURCE_BLOB_FILE);
    for (file, bytes) in [
        (&target, block.as_slice()),
        (&out_dir.join(RESOURCE_DIGEST_FILE), digest.as_bytes()),
    ] {
        fs::write(file, bytes)
            .map_err(|e| EmbedError(format!("cannot write {}: {e}", file.display())))?;
    }
    Ok(Embedded {
        block: target,
        inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(manifest: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        fs::write(dir.path().join("plugin.json"), manifest).expect("manifest");
        for (path, bytes) in files {
            let file = dir.path().join(path);
            fs::create_dir_all(file.parent().expect("a parent")).expect("directories");
            fs::write(file, bytes).expect("resource");
        }
        dir
    }

    #[test]
    fn embeds_each_declared_file_with_its_hash() {
        let dir = crate_with(
            r#"{"id":"p","version":"1.0.0","resources":[
                {"path":"skills/a.md","media_type":"text/markdown"},{"path":"b.bin"}]}"#,
            &[("skills/a.md", b"# A\n"), ("b.bin", &[0, 1, 2])],
        );
        let out = tempfile::tempdir().expect("out dir");
        let embedded = embed_resources_in(dir.path(), out.path()).expect("embeds");
        assert_eq!(embedded.inputs.len(), 3);
        let bytes = fs::read(&embedded.block).expect("block written");
        let block = ResourceBlock::parse(&bytes).expect("parses");
        assert_eq!(block.entries[0].path, "skills/a.md");
        assert_eq!(&bytes[block.entries[0].range.clone()], b"# A\n");
        assert_eq!(block.entries[0].blake3, *blake3::hash(b"# A\n").as_bytes());
        assert_eq!(block.entries[1].media_type, "application/octet-stream");
        let digest = fs::read_to_string(out.path().join(RESOURCE_DIGEST_FILE)).expect("digest");
        assert_eq!(digest, blake3::hash(&bytes).to_hex().as_str());
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it_and_the_manifest() {
        let dir = crate_with(
            r#"{"id":"p","version":"1.0.0","resources":[{"path":"gone.md"}]}"#,
            &[],
        );
        let out = tempfile::tempdir().expect("out dir");
        let e = embed_resources_in(dir.path(), out.path()).expect_err("missing");
        assert!(
            e.0.contains("\"gone.md\"") && e.0.contains("plugin.json"),
            "{e}"
        );
    }

    #[test]
    fn a_symlink_out_of_the_crate_and_a_bad_manifest_are_errors() {
        let outside = crate_with(r#"{"id":"q","version":"1.0.0"}"#, &[("secret", b"s")]);
        let dir = crate_with(
            r#"{"id":"p","version":"1.0.0","resources":[{"path":"link"}]}"#,
            &[],
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link"))
                .expect("symlink");
            let out = tempfile::tempdir().expect("out dir");
            let e = embed_resources_in(dir.path(), out.path()).expect_err("escapes");
            assert!(e.0.contains("outside the crate"), "{e}");
        }
        let bad = crate_with(
            r#"{"id":"p","version":"1.0.0","resources":[{"path":"../x"}]}"#,
            &[],
        );
        let out = tempfile::tempdir().expect("out dir");
        let e = embed_resources_in(bad.path(), out.path()).expect_err("invalid");
        assert!(e.0.contains(".."), "{e}");
    }
}

//! Plugins through OCI registries: `airlock publish` (one artifact, or an index with one entry
//! per target), `install oci://…` and `install oci-layout:…`, `airlock pull` into an image
//! layout, and `outdated` / `update` against the sources the lock pins.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock::fleet::{
    self, copy, fetch, open, resolve, ArtifactRef, Destination, FleetError, Origin, Packed,
    RegistryOptions, Selector,
};
use airlock::pipeline::{read_built_library, Lock, DEFAULT_MAX_LIBRARY_SIZE};
use airlock::Policy;

use super::install::{install_one, prepare_plugin_dir};
use crate::Result;

fn registry_options(policy: &Policy) -> RegistryOptions {
    RegistryOptions::from_policy(policy)
}

/// `airlock publish FILE... oci://REGISTRY/REPOSITORY:TAG`: each library read as a host would
/// read it (nothing of it runs), packed with its signature, and pushed; several make an index
/// with one entry per target, read from each library's provenance.
pub(crate) fn publish(files: &[PathBuf], to: &str, policy: &Policy) -> Result<ExitCode> {
    let reference = ArtifactRef::parse(to, None)?;
    let Selector::Tag(tag) = &reference.selector else {
        return Err(format!(
            "{to}: publish to a tag (…:1.2.0); a digest is what the registry computes"
        )
        .into());
    };
    let mut packed: Vec<Packed> = Vec::new();
    for file in files {
        let mut library = read_built_library(file, DEFAULT_MAX_LIBRARY_SIZE)
            .map_err(|refusal| format!("not published: {refusal}"))?;
        library.examine_signature(policy.trust());
        packed.push(fleet::pack(&library)?);
    }
    let mut store = open(&reference, &registry_options(policy), true)?;
    for artifact in &packed {
        for blob in std::iter::once(&artifact.config).chain(&artifact.layers) {
            store.push_blob(blob)?;
        }
    }
    let top = match packed.as_slice() {
        [one] => {
            store.push_manifest(&one.manifest, Some(tag))?;
            one.manifest.descriptor.digest.clone()
        }
        many => {
            let index = fleet::index(many)?;
            for artifact in many {
                store.push_manifest(&artifact.manifest, None)?;
            }
            store.push_manifest(&index, Some(tag))?;
            index.descriptor.digest.clone()
        }
    };
    for artifact in &packed {
        println!(
            "{} for {}: manifest {}",
            artifact.layers[0]
                .descriptor
                .annotations
                .get(fleet::artifact::annotations::TITLE)
                .map_or("library", String::as_str),
            artifact.target,
            artifact.manifest.descriptor.digest
        );
    }
    println!("published {reference} ({top})");
    Ok(ExitCode::SUCCESS)
}

/// `airlock install oci://… [--version RANGE]`: this host's entry resolved, fetched by digest,
/// checked and installed as a file, pinned with its source and digest.
pub(crate) fn install(text: &str, range: Option<&str>, to: Destination<'_>) -> Result<ExitCode> {
    let reference = ArtifactRef::parse(text, range)?;
    prepare_plugin_dir(to.dir, to.policy)?;
    Ok(if install_from(&reference, to)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn install_from(reference: &ArtifactRef, to: Destination<'_>) -> Result<bool> {
    let mut store = open(reference, &registry_options(to.policy), false)?;
    let resolved = match resolve(store.as_mut(), reference, fleet::HOST_TARGET) {
        Ok(resolved) => resolved,
        Err(
            e @ (FleetError::Digest { .. }
            | FleetError::Artifact(_)
            | FleetError::NoPlatform { .. }),
        ) => {
            println!("not installed: {e}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let staging = tempfile::tempdir()?;
    let fetched = match fetch(store.as_mut(), &resolved, staging.path()) {
        Ok(fetched) => fetched,
        Err(e @ (FleetError::Digest { .. } | FleetError::Artifact(_))) => {
            println!("not installed: {e}");
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    println!("fetched {} ({})", resolved.reference, resolved.digest);
    let origin = Origin {
        source: match &reference.selector {
            Selector::Range(_) => reference.repository_text(),
            _ => resolved.reference.to_string(),
        },
        range: match &reference.selector {
            Selector::Range(range) => Some(range.to_string()),
            _ => None,
        },
        digest: resolved.digest.clone(),
    };
    install_one(&fetched.library, to, Some(&origin))
}

/// `airlock pull oci://… DIR`: the artifact, every platform of it, copied into an OCI image
/// layout with each byte verified, for `install oci-layout:DIR:TAG` where there is no network.
pub(crate) fn pull(
    text: &str,
    range: Option<&str>,
    dir: &Path,
    tag: Option<&str>,
    policy: &Policy,
) -> Result<ExitCode> {
    let reference = ArtifactRef::parse(text, range)?;
    let mut from = open(&reference, &registry_options(policy), false)?;
    let chosen = match (&reference.selector, tag) {
        (_, Some(tag)) => tag.to_owned(),
        (Selector::Tag(tag), None) => tag.clone(),
        (Selector::Range(_), None) => match resolve(from.as_mut(), &reference, fleet::HOST_TARGET)?
            .reference
            .selector
        {
            Selector::Tag(tag) => tag,
            _ => "latest".to_owned(),
        },
        (Selector::Digest(_), None) => {
            return Err(format!("{text}: name the tag it gets in the layout with --tag").into())
        }
    };
    let mut to = fleet::Layout::open(dir, true)?;
    let digest = copy(from.as_mut(), &reference, &mut to, &chosen)?;
    println!(
        "pulled {reference} ({digest}) into oci-layout:{}:{chosen}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A pin that came from an artifact: the plugin, its source, the digest pinned, and the one
/// its source points to now (`None` if the registry could not be asked).
struct Pinned {
    id: String,
    reference: ArtifactRef,
    pinned: String,
    now: Option<String>,
}

/// The pins of `lock` that came from an artifact, and what their sources point to now.
fn sources(lock: &Path, policy: &Policy, only: &[String]) -> Result<Vec<Pinned>> {
    let lock = Lock::from_file(lock)?;
    let mut found = Vec::new();
    for (id, entry) in lock.entries() {
        let (Some(source), Some(digest)) = (&entry.source, &entry.digest) else {
            continue;
        };
        if !only.is_empty() && !only.iter().any(|o| o == id.as_str()) {
            continue;
        }
        let reference = ArtifactRef::parse(source, entry.range.as_deref())?;
        let now = open(&reference, &registry_options(policy), false)
            .and_then(|mut store| resolve(store.as_mut(), &reference, fleet::HOST_TARGET))
            .map(|r| r.digest);
        let now = match now {
            Ok(now) => Some(now),
            Err(e) => {
                eprintln!("{id}: {e}");
                None
            }
        };
        found.push(Pinned {
            id: id.to_string(),
            reference,
            pinned: digest.clone(),
            now,
        });
    }
    Ok(found)
}

/// `airlock outdated`: each pinned artifact against what its source points to now.
pub(crate) fn outdated(lock: &Path, policy: &Policy) -> Result<ExitCode> {
    println!("{:<20} {:<24} {:<24} SOURCE", "PLUGIN", "PINNED", "NOW");
    let mut code = ExitCode::SUCCESS;
    for Pinned {
        id,
        reference,
        pinned,
        now,
    } in sources(lock, policy, &[])?
    {
        let short = |d: &str| d.chars().take(19).collect::<String>();
        let now_text = now.as_deref().map_or("unreachable".to_owned(), short);
        let state = match now.as_deref() {
            Some(now) if now == pinned => "up to date",
            Some(_) => "outdated",
            None => {
                code = ExitCode::from(1);
                "unknown"
            }
        };
        println!(
            "{id:<20} {:<24} {now_text:<24} {reference} ({state})",
            short(&pinned)
        );
    }
    Ok(code)
}

/// `airlock update [ID...]`: the pinned artifacts whose source points elsewhere now, installed
/// again from it (each checked as a new install is).
pub(crate) fn update(ids: &[String], dir: &Path, lock: &Path, policy: &Policy) -> Result<ExitCode> {
    let mut code = ExitCode::SUCCESS;
    let mut updated = 0;
    for Pinned {
        id,
        reference,
        pinned,
        now,
    } in sources(lock, policy, ids)?
    {
        match now {
            Some(now) if now != pinned => {
                let to = Destination {
                    dir,
                    policy,
                    lock: Some(lock),
                    replace: true,
                };
                if install_from(&reference, to)? {
                    updated += 1;
                } else {
                    code = ExitCode::from(1);
                }
            }
            Some(_) => println!("{id}: up to date ({pinned})"),
            None => code = ExitCode::from(1),
        }
    }
    println!("{updated} updated");
    Ok(code)
}

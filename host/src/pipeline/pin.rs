//! `airlock lock`'s side of the pipeline: what passes stages 1–3, pinned.

use std::path::Path;

use super::report::{LoadReport, PluginReport};
use super::{check, ok_report, PipelineOptions};
use crate::error::Error;
use crate::library::lock::Lock;

/// Pins what passes stages 1–3 (ignoring any lock already in force): the lock `airlock lock`
/// writes to `output`. Refused files are in the report and not pinned. An entry of the lock
/// already at `output` with the same bytes keeps the artifact it was installed from.
///
/// # Errors
///
/// [`Error::PluginDir`] if a directory cannot be read.
pub fn pin(options: &PipelineOptions, output: &Path) -> Result<(Lock, LoadReport), Error> {
    let options = PipelineOptions {
        lock: None,
        ..options.clone()
    };
    let before = Lock::from_file(output).ok();
    let mut entries = std::collections::BTreeMap::new();
    let mut report = LoadReport::default();
    for checked in check(&options)? {
        match checked {
            Ok(c) => {
                let file_name = c
                    .file
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                report.plugins.push(ok_report(
                    &c.file,
                    format!("pinned blake3 {}", c.file.blake3),
                ));
                let origin = before
                    .as_ref()
                    .and_then(|l| l.get(&c.file.manifest.id))
                    .filter(|e| e.blake3.as_deref() == Some(c.file.blake3.as_str()));
                entries.insert(
                    c.file.manifest.id.clone(),
                    crate::library::lock::LockEntry {
                        blake3: Some(c.file.blake3.clone()),
                        sha256: None,
                        version: c.file.manifest.version.to_string(),
                        file: file_name,
                        source: origin.and_then(|e| e.source.clone()),
                        range: origin.and_then(|e| e.range.clone()),
                        digest: origin.and_then(|e| e.digest.clone()),
                    },
                );
            }
            Err(refusal) => report.plugins.push(PluginReport::refused(&refusal, None)),
        }
    }
    Ok((Lock::new(output, entries), report))
}

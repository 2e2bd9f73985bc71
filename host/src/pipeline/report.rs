//! What the pipeline reports about each file: loaded (or loadable) or refused with a reason,
//! as a table for people or JSON for programs (`airlock check --format json`).

use std::fmt::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Refusal, RefusalReason};

/// Whether a file passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed every stage that was run.
    Ok,
    /// Refused; see the reason.
    Refused,
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginReport {
    /// The library file as found.
    pub file: PathBuf,
    /// The plugin id, once known.
    pub id: Option<String>,
    /// The plugin's version, once known.
    pub version: Option<String>,
    /// Passed or refused.
    pub status: Status,
    /// The reason code, for refusals.
    pub reason: Option<RefusalReason>,
    /// What was expected and found, or a summary for files that passed.
    pub detail: String,
    /// The plugins it depends on (`depends_on`), each with what satisfies it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<DependencyReport>,
    /// What the operator should know about a file that passed, though nothing refuses it: the
    /// grant lint's warning ([`crate::policy::authority_warning`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For a library file that passed: whether its code is (or, for a check, would be) mapped
    /// in place or from a sealed copy, and why not in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::library::file::Placement>,
}

/// One dependency of a plugin in a report: its range, and what the set holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyReport {
    /// The plugin depended on.
    pub id: String,
    /// The semver range it must be in.
    pub range: String,
    /// Whether the plugin does without it.
    pub optional: bool,
    /// What was found under that id: `1.4.0 (file)`, with its state if it is not running, or
    /// `refused (reason)`; `None` when nothing was.
    pub found: Option<String>,
    /// Whether the dependency is met (an optional one that is missing is).
    pub satisfied: bool,
}

impl std::fmt::Display for DependencyReport {
    /// `needs b ^1.4: 1.4.0 (b.so)`, `needs m ^1 (optional): not found`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let optional = if self.optional { " (optional)" } else { "" };
        let mark = if self.satisfied { "" } else { " [unmet]" };
        match &self.found {
            Some(found) => write!(
                f,
                "needs {} {}{optional}: {found}{mark}",
                self.id, self.range
            ),
            None => write!(
                f,
                "needs {} {}{optional}: not found{mark}",
                self.id, self.range
            ),
        }
    }
}

impl PluginReport {
    pub(crate) fn refused(refusal: &Refusal, version: Option<String>) -> Self {
        Self {
            file: refusal.file.clone(),
            id: refusal.id.as_ref().map(ToString::to_string),
            version,
            status: Status::Refused,
            reason: Some(refusal.reason),
            detail: refusal.detail.clone(),
            dependencies: Vec::new(),
            warnings: Vec::new(),
            placement: None,
        }
    }
}

/// The outcome for every file the pipeline looked at, in discovery order (for a load, in the
/// order plugins were created: each after the plugins it depends on).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// One entry per file.
    pub plugins: Vec<PluginReport>,
}

impl LoadReport {
    /// Whether every file passed.
    pub fn all_ok(&self) -> bool {
        self.plugins.iter().all(|p| p.status == Status::Ok)
    }

    /// The refused entries.
    pub fn refused(&self) -> impl Iterator<Item = &PluginReport> {
        self.plugins.iter().filter(|p| p.status == Status::Refused)
    }

    /// The report as `{"plugins":[{"file","id","version","status","reason","detail"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The report as a table for people.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let name = |p: &PluginReport| {
            p.file.file_name().map_or_else(
                || p.file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        let width = self
            .plugins
            .iter()
            .map(|p| name(p).len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            out,
            "{:<width$}  {:<20}  {:<24}  DETAIL",
            "FILE", "PLUGIN", "STATUS"
        );
        for p in &self.plugins {
            let plugin = match (&p.id, &p.version) {
                (Some(id), Some(v)) => format!("{id} {v}"),
                (Some(id), None) => id.clone(),
                _ => "-".to_owned(),
            };
            let status = match p.reason {
                Some(reason) => format!("refused: {reason}"),
                None => "ok".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<width$}  {plugin:<20}  {status:<24}  {}",
                name(p),
                p.detail
            );
            if let Some(placement) = &p.placement {
                let _ = writeln!(out, "{:<width$}    mapped {placement}", "");
            }
            for dependency in &p.dependencies {
                let _ = writeln!(out, "{:<width$}    {dependency}", "");
            }
            for warning in &p.warnings {
                let _ = writeln!(out, "{:<width$}    warning: {warning}", "");
            }
        }
        let refused = self.refused().count();
        let _ = writeln!(
            out,
            "{} ok, {refused} refused",
            self.plugins.len() - refused
        );
        out
    }
}

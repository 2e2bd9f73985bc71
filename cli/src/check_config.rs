//! `airlock check DIR… --config FILE`: a dry run of configs before they are deployed. FILE
//! holds `[plugins.<id>.config]` tables — the shape of the policy's, for one plugin or several
//! — in TOML, or in JSON when it is named `*.json`. The plugins are loaded with the policy's
//! configs; each config in FILE is then checked by [`airlock::Host::check_config`] (references,
//! the schema's defaults, the schema, the plugin's own validation) and applied nowhere. The host
//! it builds touches none of the operator's state: its store is an empty one in a scratch
//! directory, its audit records stay in memory. The plugins are created (stage 5; a config is
//! checked against a loaded plugin), with their grants.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use airlock::policy::PolicyFormat;
use airlock::{Error, HostBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::args::Format;
use crate::Result;

/// FILE as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    plugins: BTreeMap<String, PluginConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    config: Value,
}

/// Reads FILE: each plugin's config, in the file's order of ids.
fn read(file: &Path) -> Result<BTreeMap<String, Value>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let shape = "it holds [plugins.<id>.config] tables and nothing else";
    let parsed: ConfigFile = match PolicyFormat::of(file) {
        PolicyFormat::Json => {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}; {shape}", file.display()))?
        }
        _ => toml::from_str(&text).map_err(|e| format!("{}: {e}; {shape}", file.display()))?,
    };
    if parsed.plugins.is_empty() {
        return Err(format!(
            "{}: no [plugins.<id>.config] table; {shape}",
            file.display()
        )
        .into());
    }
    Ok(parsed
        .plugins
        .into_iter()
        .map(|(id, p)| (id, p.config))
        .collect())
}

/// Runs the dry run: 0 when every config would be accepted, 1 otherwise.
pub(crate) fn run(builder: HostBuilder, file: &Path, format: Format) -> Result<ExitCode> {
    let configs = read(file)?;
    // Nothing of the operator's: an empty store in a scratch directory stands for `[host]
    // data_dir` (the plugins' kv, pending answers and approvals, which the host's sweeps would
    // expire), and the audit records are kept in memory.
    let scratch = tempfile::tempdir().map_err(|e| format!("a scratch data directory: {e}"))?;
    let mut policy = builder.options().policy.clone();
    policy.host_mut().data_dir = Some(scratch.path().to_owned());
    policy.host_mut().audit_log = None;
    let host = builder.policy(policy).build()?;
    let report = host.load()?;
    let mut results = Vec::new();
    for (id, config) in &configs {
        let result = match host.check_config(id, config) {
            Ok(checked) => json!({
                "id": id,
                "ok": true,
                "config": checked.config,
                "defaults": checked.defaults,
                "warnings": checked.warnings,
            }),
            Err(Error::ConfigRejected { errors, .. }) => {
                json!({ "id": id, "ok": false, "errors": errors })
            }
            Err(Error::UnknownPlugin(_)) => {
                let why = report
                    .plugins
                    .iter()
                    .find(|p| p.id.as_deref() == Some(id.as_str()))
                    .map_or_else(
                        || "no library in the plugin directories provides it".to_owned(),
                        |p| match p.reason {
                            Some(reason) => format!("{reason}: {}", p.detail),
                            None => p.detail.clone(),
                        },
                    );
                json!({ "id": id, "ok": false, "errors": [format!("not loaded ({why})")] })
            }
            Err(e) => json!({ "id": id, "ok": false, "errors": [e.to_string()] }),
        };
        results.push(result);
    }
    host.shutdown();
    let ok = results.iter().all(|r| r["ok"] == true);
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "configs": results }))?
        ),
        Format::Table => {
            for result in &results {
                print_one(result);
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_one(result: &Value) {
    let id = result["id"].as_str().unwrap_or_default();
    let list = |key: &str| -> Vec<String> {
        result[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if result["ok"] == true {
        println!("{id}: config ok (nothing applied)");
        let defaults = list("defaults");
        if !defaults.is_empty() {
            println!("  defaults filled in: {}", defaults.join(", "));
        }
        for warning in list("warnings") {
            println!("  warning: {warning}");
        }
        println!("  config: {}", result["config"]);
    } else {
        println!("{id}: config rejected");
        for error in list("errors") {
            println!("  {error}");
        }
    }
}

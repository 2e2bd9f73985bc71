//! `airlock inspect`: what a library file says about itself (its manifest block, its
//! signature), read without running any of it.

use std::path::Path;
use std::process::ExitCode;

use airlock::pipeline::{read_library, DEFAULT_MAX_LIBRARY_SIZE};

use crate::args::Format;
use crate::commands::read_policy;
use crate::Result;

pub(crate) fn inspect(file: &Path, policy: Option<&Path>, format: Format) -> Result<ExitCode> {
    let mut library = match read_library(file, file, DEFAULT_MAX_LIBRARY_SIZE) {
        Ok(library) => library,
        Err(refusal) => {
            if format == Format::Json {
                println!(
                    "{}",
                    serde_json::json!({"file": file, "status": "refused", "reason": refusal.reason, "detail": refusal.detail})
                );
            } else {
                println!("{refusal}");
            }
            return Ok(ExitCode::from(1));
        }
    };
    // Without a policy no key is trusted: a signature shows its key id, unverified.
    library.examine_signature(read_policy(policy)?.trust());
    let m = &library.manifest;
    if format == Format::Json {
        let out = serde_json::json!({
            "file": file,
            "status": "ok",
            "blake3": library.blake3,
            "size": library.len(),
            "abi_version": library.block.abi_version,
            "rustc": library.block.rustc,
            "target": library.block.target,
            "panic": library.block.panic,
            "signature": library.signature,
            "manifest": m,
            "resources": resources_json(&library),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("file:         {}", file.display());
        println!("plugin:       {} {}", m.id, m.version);
        println!("description:  {}", m.description);
        println!("blake3:       {}", library.blake3);
        println!("airlock-abi:  {}", library.block.abi_version);
        println!("rustc:        {}", library.block.rustc);
        println!("target:       {}", library.block.target);
        println!("panic:        {}", library.block.panic);
        println!("concurrency:  {:?}", m.concurrency);
        println!("signature:    {}", library.signature);
        for c in &m.capabilities {
            println!(
                "capability:   {}{}{}",
                c.capability,
                if c.required { " (required)" } else { "" },
                c.reason
                    .as_deref()
                    .map(|r| format!(" - {r}"))
                    .unwrap_or_default()
            );
        }
        for a in &m.actions {
            let hints: Vec<String> = a
                .title
                .iter()
                .map(|t| format!("title {t:?}"))
                .chain(a.read_only.then(|| "read-only".to_owned()))
                .chain(a.destructive.then(|| "destructive".to_owned()))
                .chain(a.idempotent.then(|| "idempotent".to_owned()))
                .collect();
            let hints = if hints.is_empty() {
                String::new()
            } else {
                format!(" [{}]", hints.join(", "))
            };
            println!("action:       {} - {}{hints}", a.name, a.description);
            for (what, schema) in [("input: ", &a.input_schema), ("output:", &a.output_schema)] {
                if let Some(schema) = schema {
                    println!("  {what}     {schema}");
                }
            }
        }
        if let Some(schema) = &m.config_schema {
            println!("config:       {schema}");
        }
        for h in &m.hooks {
            println!("hook:         {} - {}", h.name, h.description);
        }
        for c in &m.claims {
            println!("claim:        {} (handled by {})", c.kind, c.action);
        }
        for r in &m.routes {
            let mut handler = r.action.as_deref().map_or_else(
                || "not handled: 501".to_owned(),
                |a| format!("handled by {a}"),
            );
            if let airlock_abi::manifest::RouteAuth::Public(public) = &r.auth {
                handler.push_str(&format!(
                    "; public: {} signature with the secret {}",
                    public.scheme.name(),
                    public.secret
                ));
            }
            println!(
                "route:        {} /plugins/{}{} ({handler}) - {}",
                r.method, m.id, r.path, r.description
            );
        }
        print_resources(&library);
        for j in &m.jobs {
            let when = match (&j.cron, j.every_ms) {
                (Some(cron), _) => format!("cron {cron} (UTC)"),
                (None, Some(ms)) => format!("every {ms} ms"),
                (None, None) => String::new(),
            };
            println!("job:          {} - {when}", j.name);
        }
        print_events(m);
        print_dependencies(m);
        print_permissions(m);
    }
    Ok(ExitCode::SUCCESS)
}

/// The topics the manifest declares it publishes, each with its payload's schema.
fn print_events(m: &airlock_abi::manifest::Manifest) {
    for e in &m.events {
        println!("event:        {} - {}", e.topic, e.description);
        if let Some(schema) = &e.schema {
            println!("  payload:    {schema}");
        }
    }
}

/// The resources the library ships, as checked from the file: path, size, media type, BLAKE3.
fn resources_json(library: &airlock::pipeline::LibraryFile) -> serde_json::Value {
    let list = library.resources().iter().map(|r| {
        serde_json::json!({"path": r.path, "size": r.len(), "media_type": r.media_type,
            "blake3": r.blake3, "description": r.description})
    });
    serde_json::Value::Array(list.collect())
}

fn print_resources(library: &airlock::pipeline::LibraryFile) {
    for r in library.resources() {
        let about = if r.description.is_empty() {
            String::new()
        } else {
            format!(" - {}", r.description)
        };
        println!(
            "resource:     {} ({} bytes, {}) blake3 {}{about}",
            r.path,
            r.len(),
            r.media_type,
            r.blake3
        );
    }
}

/// `airlock inspect FILE --resource PATH`: the bytes of one resource, as stage 2 checked them,
/// on stdout (a refusal or an unknown path on stderr, exit code 1). Nothing of the library runs.
pub(crate) fn print_resource(
    file: &Path,
    policy: Option<&Path>,
    format: Format,
    path: &str,
) -> Result<ExitCode> {
    use std::io::Write;
    let library = match read_library(file, file, DEFAULT_MAX_LIBRARY_SIZE) {
        Ok(library) => library,
        Err(_) => return inspect(file, policy, format),
    };
    let Some(resource) = library.resources().iter().find(|r| r.path == path) else {
        let declared: Vec<&str> = library
            .resources()
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        eprintln!(
            "{}: plugin {} ships no resource {path:?}; it ships {declared:?}",
            file.display(),
            library.manifest.id
        );
        return Ok(ExitCode::from(1));
    };
    std::io::stdout().write_all(&resource.bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// The plugins this one depends on, with their ranges (`airlock check` shows what satisfies
/// each, over the whole set).
fn print_dependencies(m: &airlock_abi::manifest::Manifest) {
    for d in &m.dependencies {
        let optional = if d.optional { " (optional)" } else { "" };
        println!("depends on:   {} {}{optional}", d.id, d.range);
    }
}

/// The permissions the plugin defines, with what they guard and their default roles.
fn print_permissions(m: &airlock_abi::manifest::Manifest) {
    for p in &m.permissions {
        let guards: Vec<String> = p
            .actions
            .iter()
            .map(|a| format!("action:{a}"))
            .chain(p.hooks.iter().map(|h| format!("hook:{h}")))
            .collect();
        let roles = if p.roles.is_empty() {
            "no role by default".to_owned()
        } else {
            format!("held by default by {}", p.roles.join(", "))
        };
        println!(
            "permission:   {} guards {} ({roles}) - {}",
            p.name,
            guards.join(", "),
            p.description
        );
    }
}

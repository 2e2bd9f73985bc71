//! `airlock inspect FILE --policy F --action NAME [--caller ..] [--role ..] [--attr ..]
//! [--input JSON]`: which permission rule decides a call, and how each rule before it met the
//! call — the operator's rules for the plugin, then those of the permissions its manifest
//! declares. Read from the file and the policy; nothing of the library runs.

use std::path::Path;
use std::process::ExitCode;

use airlock::call::CallerInfo;
use airlock::pipeline::{read_library, DEFAULT_MAX_LIBRARY_SIZE};
use airlock::policy::{explain as walk, with_declared, Permission, RuleCheck, Target};
use airlock::Principal;

use crate::args::{Explain, Format};
use crate::commands::read_policy;
use crate::Result;

pub(crate) fn explain(
    file: &Path,
    policy: Option<&Path>,
    format: Format,
    args: &Explain,
) -> Result<ExitCode> {
    let library = match read_library(file, file, DEFAULT_MAX_LIBRARY_SIZE) {
        Ok(library) => library,
        Err(refusal) => {
            eprintln!("{refusal}");
            return Ok(ExitCode::from(1));
        }
    };
    let policy = read_policy(policy)?;
    let manifest = &library.manifest;
    let target = match (&args.action, &args.hook) {
        (Some(action), _) => Target::Action(action),
        (None, Some(hook)) => Target::Hook(hook),
        (None, None) => return Err("name the --action or --hook to explain".into()),
    };
    let declared = match target {
        Target::Action(name) => manifest.actions.iter().any(|a| a.name == name),
        Target::Hook(name) => manifest.hooks.iter().any(|h| h.name == name),
    };
    if !declared {
        eprintln!(
            "{}: plugin {} declares no {target}",
            file.display(),
            manifest.id
        );
        return Ok(ExitCode::from(1));
    }
    let caller = caller(args)?;
    let rules = with_declared(
        &policy.for_plugin(&manifest.id).permissions,
        &manifest.permissions,
    );
    let (steps, decided) = walk(&rules, target, &caller, args.input.as_bytes());
    let decision = match decided.permission {
        Permission::Allow => "allow",
        Permission::Deny => "deny",
        Permission::Ask => "ask",
    };
    let by = decided.rule.and_then(|n| rules.get(n)).map_or_else(
        || "no rule covers the call, so it is allowed".to_owned(),
        |r| r.origin.to_string(),
    );
    let lines: Vec<(String, String)> = steps
        .iter()
        .zip(&rules)
        .map(|(step, rule)| {
            let what = match step {
                RuleCheck::OtherTarget => format!("skipped: it does not name {target}"),
                RuleCheck::OtherCaller => "skipped: it covers other callers".to_owned(),
                RuleCheck::OtherInput(pointer) => {
                    format!("skipped: the input at {pointer:?} matches none of its globs")
                }
                RuleCheck::Unreadable(why) => format!("decides: deny, as {why}"),
                RuleCheck::Covers => format!("decides: {:?}", rule.decision).to_lowercase(),
            };
            (rule.origin.to_string(), what)
        })
        .collect();
    if format == Format::Json {
        let out = serde_json::json!({
            "plugin": manifest.id.as_str(),
            "target": target.to_string(),
            "caller": caller,
            "decision": decision,
            "rule": decided.rule.map(|_| &by),
            "unreadable": decided.unreadable,
            "steps": lines.iter().map(|(rule, what)| serde_json::json!({"rule": rule, "outcome": what})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{target} of {}, called by {caller}:", manifest.id);
        for (n, (rule, what)) in lines.iter().enumerate() {
            println!("  {}. {rule}: {what}", n + 1);
        }
        println!("decision: {decision} ({by})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The caller the flags describe.
fn caller(args: &Explain) -> Result<CallerInfo> {
    let principal = |id: &str| -> Result<Principal> {
        let roles: Vec<&str> = args.roles.iter().map(String::as_str).collect();
        let mut principal = Principal::new(id, &roles);
        for pair in &args.attributes {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(format!("--attr {pair:?}: expected NAME=VALUE").into());
            };
            principal = principal.with_attribute(name, value);
        }
        Ok(principal)
    };
    let described = !args.roles.is_empty() || !args.attributes.is_empty();
    Ok(match args.caller.split_once(':') {
        None if args.caller == "host" && !described => CallerInfo::Host { principal: None },
        Some(("user", id)) if !id.is_empty() => CallerInfo::Host {
            principal: Some(principal(id)?),
        },
        Some(("plugin", id)) if !id.is_empty() && !described => CallerInfo::Plugin {
            id: id.to_owned(),
            generation: 1,
        },
        _ if described => {
            return Err("--role and --attr describe a principal: pass --caller user:<id>".into())
        }
        _ => {
            return Err(format!(
                "--caller {:?}: expected host, user:<id> or plugin:<id>",
                args.caller
            )
            .into())
        }
    })
}

//! An editor embedding Airlock, offering its own service to plugins: the buffers, named once in
//! the interface crate `airlock-contract-editor` that the editor and its plugins share. It
//! loads three plugins written against that crate, with different grants, and shows, one step
//! at a time, what the membrane does with the editor's service:
//!
//! 1. `wordfreq` claims `stats.buffer` like `wordcount`: refused at load (`claim_conflict`);
//! 2. `wordcount` reads a buffer (granted); `host.dispatch("stats.buffer").json(..)` reaches it;
//! 3. `formatter` declared `editor.replace` but was granted only `editor.read`: its `apply`
//!    fails on the write (`capability_violation`, one audit record naming who asked); and the
//!    policy lets only editors call `apply` at all (`permission_denied` for anyone else);
//! 4. `shout` may be called by editors at once; anyone else needs an approval, which the
//!    approver defers: the call answers `pending_approval`, and runs once approved;
//! 5. the operator revokes `wordcount`'s read grant at run time: its next read is denied.
//!
//! Run it with `./scripts/editor-example.sh`, which builds the plugins first.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airlock::approvals::Approval;
use airlock::services::{AuditOutcome, Caller, ServiceError};
use airlock::{Host, Policy, Principal, Reply};
use airlock_contract_editor::{Buffer, ReadBuffer, Replace, ReplaceBuffer};
use serde_json::json;

/// The operator's policy: what each plugin may do with the editor's service, and who may call
/// `formatter.shout` without asking.
const POLICY: &str = r#"
[plugins.wordcount]
grants = ["service:editor.read"]

[plugins.wordfreq]
grants = ["service:editor.read"]

[plugins.formatter]
grants = ["service:editor.read"]

[[plugins.formatter.permissions]]
actions = ["shout"]
callers = ["role:editor"]
decision = "allow"

[[plugins.formatter.permissions]]
actions = ["shout"]
decision = "ask"

[[plugins.formatter.permissions]]
actions = ["apply"]
callers = ["role:editor"]
decision = "allow"

[[plugins.formatter.permissions]]
actions = ["apply"]
decision = "deny"
"#;

/// Runs the example over the plugin libraries in `dir`, writing what happens to `out`.
///
/// # Errors
///
/// If the host cannot be built or the directory read, or writing to `out` fails.
pub fn run(dir: &Path, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let buffers = Arc::new(Mutex::new(BTreeMap::from([(
        "notes".to_owned(),
        "plugins behind a membrane".to_owned(),
    )])));
    // What the editor's side saw (its service handlers and its approver), shown as it happens.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (read, replace) = (buffers.clone(), buffers.clone());
    let (read_seen, asked_seen) = (seen.clone(), seen.clone());
    let host = Host::builder()
        .plugin_dir(dir)
        .policy(Policy::parse(POLICY, airlock::policy::PolicyFormat::Toml)?)
        // The editor's service: the handlers see which plugin calls, on whose behalf.
        .operation::<ReadBuffer>(move |caller: &Caller, input: Buffer| {
            note(
                &read_seen,
                format!(
                    "  editor: {} reads {:?}, for {}",
                    caller.plugin, input.buffer, caller.on_behalf_of
                ),
            );
            let buffers = read
                .lock()
                .map_err(|_| ServiceError::new("buffers poisoned"))?;
            buffers
                .get(&input.buffer)
                .cloned()
                .ok_or_else(|| ServiceError::new(format!("no buffer {:?}", input.buffer)))
        })
        .operation::<ReplaceBuffer>(move |_: &Caller, input: Replace| {
            let mut buffers = replace
                .lock()
                .map_err(|_| ServiceError::new("buffers poisoned"))?;
            buffers.insert(input.buffer, input.text);
            Ok(())
        })
        // Anything `ask` covers waits for a person: the editor shows it and decides later.
        .approver(move |request| {
            note(
                &asked_seen,
                format!(
                    "  approver: {} asks for {}.{}; decided later ({})",
                    request.caller, request.plugin, request.name, request.id
                ),
            );
            Approval::Later
        })
        .build()?;

    let report = host.load()?;
    for refused in report.refused() {
        let reason = refused.reason.map_or("?", |r| r.code());
        writeln!(out, "refused {reason}: {}", refused.detail)?;
    }
    let loaded: Vec<_> = host.plugins().into_iter().map(|p| p.id).collect();
    writeln!(out, "loaded {}", loaded.join(", "))?;

    let notes = json!({"buffer": "notes"});
    let ada = Principal::new("ada", &["editor"]);
    let bob = Principal::new("bob", &[]);

    // 2. A granted read, by name and through the claim.
    let words = host
        .call("wordcount", "count")
        .as_principal(&ada)
        .json(&notes)?;
    say(
        out,
        &seen,
        &format!("wordcount.count for ada: {}", show(&words)),
    )?;
    let dispatched = host.dispatch("stats.buffer").json(&notes)?;
    say(
        out,
        &seen,
        &format!(
            "dispatch stats.buffer reached {} after {} attempt(s): {}",
            dispatched.holder,
            dispatched.attempts,
            show(&dispatched.reply)
        ),
    )?;

    // 3. Declared, not granted: denied, and audited once.
    let applied = host
        .call("formatter", "apply")
        .as_principal(&ada)
        .json(&notes);
    say(
        out,
        &seen,
        &format!("formatter.apply for ada: {}", shown(applied)),
    )?;
    let applied = host
        .call("formatter", "apply")
        .as_principal(&bob)
        .json(&notes);
    say(
        out,
        &seen,
        &format!("formatter.apply for bob: {}", shown(applied)),
    )?;

    // 4. Allowed at once for an editor; pending for bob, then approved.
    let shouted = host
        .call("formatter", "shout")
        .as_principal(&ada)
        .json(&notes)?;
    say(
        out,
        &seen,
        &format!("formatter.shout for ada: {}", show(&shouted)),
    )?;
    let pending = host
        .call("formatter", "shout")
        .as_principal(&bob)
        .json(&notes)?;
    say(
        out,
        &seen,
        &format!("formatter.shout for bob: {}", show(&pending)),
    )?;
    if let Reply::PendingApproval(id) = pending {
        let approved = host.approve(id)?;
        say(out, &seen, &format!("approved {id}: {}", show(&approved)))?;
    }

    // 5. Revoked at run time.
    host.revoke_capability("wordcount", "service:editor.read")?;
    let revoked = host
        .call("wordcount", "count")
        .as_principal(&ada)
        .json(&notes);
    say(
        out,
        &seen,
        &format!("wordcount.count after the revocation: {}", shown(revoked)),
    )?;

    for record in host.audit().tail(usize::MAX) {
        if matches!(
            record.outcome,
            AuditOutcome::Denied
                | AuditOutcome::PermissionDenied
                | AuditOutcome::Revoked
                | AuditOutcome::ApprovalPending
                | AuditOutcome::Approved
        ) {
            let who = record
                .caller
                .map(|c| format!(" (asked by {c})"))
                .unwrap_or_default();
            writeln!(
                out,
                "audit: {} {:?} {}{who}",
                record.plugin, record.outcome, record.capability
            )?;
        }
    }
    host.shutdown();
    Ok(())
}

fn note(seen: &Mutex<Vec<String>>, line: String) {
    if let Ok(mut seen) = seen.lock() {
        seen.push(line);
    }
}

/// Writes what the editor's side saw since the last time, then `line`.
fn say(out: &mut dyn Write, seen: &Mutex<Vec<String>>, line: &str) -> std::io::Result<()> {
    let lines = seen
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    for seen in lines {
        writeln!(out, "{seen}")?;
    }
    writeln!(out, "{line}")
}

fn show(outcome: &Reply) -> String {
    match outcome {
        Reply::Ok(value) => format!("ok {value}"),
        Reply::Error(message) => format!("error {message}"),
        Reply::PendingApproval(id) => format!("pending_approval {id}"),
        Reply::Pending { id, description } => format!("pending {id}: {description}"),
    }
}

fn shown(result: Result<Reply, airlock::CallError>) -> String {
    match result {
        Ok(outcome) => show(&outcome),
        Err(e) => format!("{}: {}", e.code, e.message),
    }
}

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/editor-plugins"), PathBuf::from);
    match run(&dir, &mut std::io::stdout()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("editor example: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

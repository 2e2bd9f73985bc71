//! A plugin compiled into the host program: registered from code with
//! `HostBuilder::builtin`, it answers actions and hooks through the same membrane as a plugin
//! loaded from a library — it is denied what the operator did not grant (with an audit record)
//! and torn down at shutdown.
//!
//! `cargo run -p airlock --example builtin`

use std::process::ExitCode;

use airlock::hooks::HookMode;
use airlock::{Host, Reply};
use airlock_abi::{ActionError, Actions, Builtin, Context, HookReply, Hooks, InitError, Plugin};

/// Stamps text, and tries to remember it in the kv store (which the policy does not grant).
struct Stamp {
    ctx: Context,
}

impl Plugin for Stamp {
    fn create(ctx: Context) -> Result<Self, InitError> {
        ctx.info("stamp: created");
        Ok(Self { ctx })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("stamp", |_: &Self, text: String| {
                Ok::<_, ActionError>(format!("[stamped] {text}"))
            })
            .add("remember", |this: &Self, text: String| {
                this.ctx.kv().set("last", &text).map_err(ActionError::from)
            });
    }

    fn hooks(hooks: &mut Hooks<Self>) {
        hooks.add("reply.transform", |_: &Self, text: String| {
            Ok(HookReply::Continue(format!("{text} (checked)")))
        });
    }

    fn teardown(self) {
        self.ctx.info("stamp: torn down");
    }
}

impl Builtin for Stamp {
    const MANIFEST: &'static str = r#"{
        "id": "stamp",
        "version": "1.0.0",
        "description": "A built-in plugin: stamps text",
        "actions": [{"name": "stamp"}, {"name": "remember"}],
        "hooks": [{"name": "reply.transform"}],
        "capabilities": ["kv"]
    }"#;
}

fn main() -> ExitCode {
    let host = match Host::builder().builtin::<Stamp>().build() {
        Ok(host) => host,
        Err(e) => {
            eprintln!("cannot create the host: {e}");
            return ExitCode::from(2);
        }
    };
    match host.load() {
        Ok(report) => {
            for plugin in &report.plugins {
                println!(
                    "{}: {:?} {}",
                    plugin.file.display(),
                    plugin.status,
                    plugin.detail
                );
            }
        }
        Err(e) => {
            eprintln!("cannot load: {e}");
            return ExitCode::from(2);
        }
    }
    match host
        .call("stamp", "stamp")
        .json(&serde_json::json!("a letter"))
    {
        Ok(Reply::Ok(value)) => println!("stamp answered {value}"),
        other => println!("stamp failed: {other:?}"),
    }
    host.define_hook("reply.transform", HookMode::Chain);
    match host
        .hooks()
        .chain::<String>("reply.transform", "all good".to_owned())
    {
        Ok(outcome) => println!("reply.transform made {:?}", outcome.value),
        Err(e) => println!("the hook failed: {e}"),
    }
    // The manifest declares kv, but no policy grants it: denied, and audited.
    match host
        .call("stamp", "remember")
        .json(&serde_json::json!("a letter"))
    {
        Err(e) => println!("remember was refused ({}): {}", e.code, e.message),
        Ok(other) => println!("remember: {other:?}"),
    }
    for record in host.audit().tail(10) {
        println!(
            "audit: {} {} {:?}: {}",
            record.plugin, record.capability, record.outcome, record.detail
        );
    }
    for record in host.shutdown() {
        println!("{}: {:?}", record.id, record.outcome);
    }
    ExitCode::SUCCESS
}

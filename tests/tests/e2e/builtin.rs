//! Plugins compiled into the host program (`HostBuilder::builtin`): the same pipeline after
//! the file, the same membrane, hooks, audit and shutdown as a library.

use std::sync::atomic::{AtomicUsize, Ordering};

use airlock::hooks::HookMode;
use airlock::plugins::TeardownOutcome;
use airlock::services::AuditOutcome;
use airlock::{CallErrorCode, Error, Host, Policy, Reply};
use airlock_abi::{ActionError, Actions, Builtin, Context, HookReply, Hooks, InitError, Plugin};
use airlock_tests::TempPluginDir;
use serde_json::json;

static TEARDOWNS: AtomicUsize = AtomicUsize::new(0);

/// A built-in plugin with an action, a hook and a capability it declares.
struct Stamp {
    ctx: Context,
}

impl Plugin for Stamp {
    fn create(ctx: Context) -> Result<Self, InitError> {
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
        TEARDOWNS.fetch_add(1, Ordering::SeqCst);
    }
}

impl Builtin for Stamp {
    const MANIFEST: &'static str = r#"{
        "id": "hello",
        "version": "1.0.0",
        "actions": [{"name": "stamp"}, {"name": "remember"}],
        "hooks": [{"name": "reply.transform"}],
        "capabilities": ["kv"]
    }"#;
}

/// A built-in whose manifest is not valid.
struct Broken;

impl Plugin for Broken {
    fn create(_: Context) -> Result<Self, InitError> {
        Ok(Self)
    }
}

impl Builtin for Broken {
    const MANIFEST: &'static str = r#"{"id": "Not An Id", "version": "1"}"#;
}

#[test]
fn a_builtin_plugin_goes_through_the_same_membrane_hooks_audit_and_shutdown() {
    // A library declaring the built-in's id (`hello`) is a duplicate: the built-in comes first.
    let dir = TempPluginDir::with(&["hello"]);
    let host = Host::builder()
        .builtin::<Stamp>()
        .builtin::<Broken>()
        .plugin_dir(dir.path())
        .policy(Policy::parse("", airlock::policy::PolicyFormat::Toml).expect("policy"))
        .build()
        .expect("host");
    let report = host.load().expect("load");
    let codes: Vec<(String, Option<&str>)> = report
        .plugins
        .iter()
        .map(|p| (p.file.display().to_string(), p.reason.map(|r| r.code())))
        .collect();
    assert_eq!(codes[0], ("builtin:hello".to_owned(), None), "{report:#?}");
    assert!(report.plugins[0].detail.contains("built into the host"));
    assert_eq!(codes[1].1, Some("bad_manifest"), "{report:#?}");
    assert_eq!(codes[2].1, Some("duplicate_id"), "{report:#?}");

    // Actions and hooks.
    assert_eq!(
        host.call("hello", "stamp")
            .json(&json!("a letter"))
            .expect("call"),
        Reply::Ok(json!("[stamped] a letter"))
    );
    host.define_hook("reply.transform", HookMode::Chain);
    let chained = host
        .hooks()
        .chain::<String>("reply.transform", "fine".to_owned())
        .expect("hook");
    assert_eq!(chained.value, "fine (checked)");

    // An ungranted capability: denied, with exactly one audit record.
    let denied = host
        .call("hello", "remember")
        .json(&json!("a letter"))
        .expect_err("kv is not granted");
    assert_eq!(denied.code, CallErrorCode::CapabilityViolation);
    let denials: Vec<_> = host
        .audit()
        .tail(100)
        .into_iter()
        .filter(|r| r.plugin == "hello" && r.outcome == AuditOutcome::Denied)
        .collect();
    assert_eq!(denials.len(), 1, "{denials:?}");
    assert_eq!(denials[0].capability, "kv");

    // No file to reload; torn down at shutdown like any plugin.
    assert!(matches!(host.reload("hello"), Err(Error::Builtin { .. })));
    let info = host.plugin("hello").expect("listed");
    assert!(info.blake3.is_empty(), "a built-in has no hash");
    let records = host.shutdown();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].outcome, TeardownOutcome::Clean);
    assert_eq!(TEARDOWNS.load(Ordering::SeqCst), 1, "its teardown ran once");
    assert!(
        !airlock::test_support::is_open(info.context),
        "its context is revoked"
    );
}

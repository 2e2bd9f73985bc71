//! The membrane, for every service × every grant state: a call is allowed only when the
//! capability is declared and granted (and not revoked); otherwise the plugin gets the typed
//! violation and exactly one audit record is written. The table is generated from
//! `CapabilityKind::ALL`, so a new service without a row does not compile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use airlock::services::{AuditOutcome, AuditRecord};
use airlock::{Host, Reply};
use airlock_abi::manifest::CapabilityKind;
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// What the probe declares and the policy grants for each service; `None` for a capability
/// reserved to the host, which no library could hold (none is today).
fn grant_for(kind: CapabilityKind) -> Option<&'static str> {
    match kind {
        CapabilityKind::Kv => Some("kv"),
        CapabilityKind::EventsPublish => Some("events.publish:probe.*"),
        CapabilityKind::EventsSubscribe => Some("events.subscribe:probe.*"),
        CapabilityKind::Timers => Some("timers"),
        CapabilityKind::Secrets => Some("secrets:probe_secret"),
        CapabilityKind::PluginsCall => Some("plugins.call:*"),
        CapabilityKind::HostControl => Some("host.control"),
        CapabilityKind::Service => Some("service:probe.*"),
        CapabilityKind::HttpOutbound => Some("http.outbound:probe.invalid"),
        CapabilityKind::PluginsList => Some("plugins.list"),
        CapabilityKind::Dispatch => Some("dispatch:probe.*"),
        CapabilityKind::HooksRun => Some("hooks.run:probe.*"),
        _ => panic!("no membrane row for {kind:?}: add one"),
    }
}

fn services() -> Vec<(CapabilityKind, &'static str)> {
    CapabilityKind::ALL
        .into_iter()
        .filter_map(|k| grant_for(k).map(|g| (k, g)))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantState {
    Granted,
    Undeclared,
    DeclaredNotGranted,
    Revoked,
}

/// A host with `probe` (declares everything), `probe-bare` (declares nothing) and `hello`
/// (the target of plugin calls); `grant` decides whether the probes are granted everything.
fn probe_host(dir: &TempPluginDir, data: &std::path::Path, grant: bool) -> Host {
    let grants: Vec<String> = services().iter().map(|(_, g)| format!("\"{g}\"")).collect();
    let grants = if grant {
        grants.join(", ")
    } else {
        String::new()
    };
    let policy = format!(
        "[host]\ndata_dir = {data:?}\naudit_log = {audit:?}\n\
         resolve = {{ \"probe.invalid\" = [\"192.0.2.1\"] }}\n\n[secrets]\nprobe_secret = \"hunter2\"\n\n\
         [plugins.probe]\ngrants = [{grants}]\n\n[plugins.probe-bare]\ngrants = [{grants}]\n",
        data = data.join("kv"),
        audit = data.join("audit.jsonl"),
    );
    let host = airlock_tests::probe_services(Host::builder())
        .plugin_dir(dir.path())
        .policy(
            airlock::Policy::parse(&policy, airlock::policy::PolicyFormat::Toml).expect("policy"),
        )
        .build()
        .expect("host");
    let report = host.load().expect("load");
    assert!(report.all_ok(), "{report:#?}");
    host
}

fn use_capability(host: &Host, plugin: &str, kind: CapabilityKind) -> Value {
    match host
        .call(plugin, "use")
        .json(&json!({ "capability": kind.name() }))
        .expect("the probe answers")
    {
        Reply::Ok(v) => v,
        other => panic!("probe failed: {other:?}"),
    }
}

fn audit_lines(path: &std::path::Path) -> Vec<AuditRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every audit line is a record"))
        .collect()
}

#[test]
fn every_service_in_every_grant_state() {
    for state in [
        GrantState::Granted,
        GrantState::Undeclared,
        GrantState::DeclaredNotGranted,
        GrantState::Revoked,
    ] {
        let dir = TempPluginDir::with(&["probe", "probe-bare", "hello"]);
        let data = tempfile::tempdir().expect("tempdir");
        let host = probe_host(&dir, data.path(), state != GrantState::DeclaredNotGranted);
        let plugin = if state == GrantState::Undeclared {
            "probe-bare"
        } else {
            "probe"
        };
        if state == GrantState::Revoked {
            for (kind, _) in services() {
                let removed = host
                    .revoke_capability("probe", kind.name())
                    .expect("revoke");
                assert_eq!(removed.len(), 1, "{kind:?}: {removed:?}");
            }
        }
        let mut answers = BTreeMap::new();
        for (kind, _) in services() {
            answers.insert(kind, use_capability(&host, plugin, kind));
        }
        drop(host);
        let records = audit_lines(&data.path().join("audit.jsonl"));
        for (kind, answer) in answers {
            let denied: Vec<_> = records
                .iter()
                .filter(|r| {
                    r.outcome == AuditOutcome::Denied && r.capability.starts_with(kind.name())
                })
                .collect();
            if state == GrantState::Granted {
                assert_eq!(answer["outcome"], "allowed", "{state:?} {kind:?}: {answer}");
                assert!(denied.is_empty(), "{state:?} {kind:?}: {denied:?}");
            } else {
                assert_eq!(
                    answer["outcome"], "capability_violation",
                    "{state:?} {kind:?}: {answer}"
                );
                assert!(
                    answer["capability"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(kind.name())),
                    "{answer}"
                );
                assert_eq!(
                    denied.len(),
                    1,
                    "{state:?} {kind:?}: exactly one audit line, got {denied:?}"
                );
                assert_eq!(denied[0].plugin, plugin);
                assert_eq!(denied[0].schema, airlock::services::AUDIT_SCHEMA);
            }
        }
        if state == GrantState::Revoked {
            let revoked = records
                .iter()
                .filter(|r| r.outcome == AuditOutcome::Revoked)
                .count();
            assert_eq!(
                revoked,
                services().len(),
                "one record per operator revocation"
            );
        }
        let text = std::fs::read_to_string(data.path().join("audit.jsonl")).unwrap_or_default();
        assert!(!text.contains("hunter2"), "a secret reached the audit log");
    }
}

#[test]
fn no_call_succeeds_after_revoke_returns_with_two_threads_calling() {
    let dir = TempPluginDir::with(&["probe", "probe-bare", "hello"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = probe_host(&dir, data.path(), true);
    let revoked = AtomicBool::new(false);
    let (mut before, mut after) = (0u32, 0u32);
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let (mut ok_before, mut denied_after) = (0u32, 0u32);
                    let started = std::time::Instant::now();
                    // Call until the revocation has happened and 20 calls were made after it.
                    while denied_after < 20 {
                        assert!(
                            started.elapsed() < std::time::Duration::from_secs(30),
                            "no revocation"
                        );
                        let started_after = revoked.load(Ordering::SeqCst);
                        let answer = use_capability(&host, "probe", CapabilityKind::EventsPublish);
                        if started_after {
                            assert_eq!(
                                answer["outcome"], "capability_violation",
                                "a call after revoke succeeded"
                            );
                            denied_after += 1;
                        } else if answer["outcome"] == "allowed" {
                            ok_before += 1;
                        }
                    }
                    (ok_before, denied_after)
                })
            })
            .collect();
        while host.plugin("probe").expect("loaded").stats.host_calls < 20 {
            std::thread::yield_now();
        }
        host.revoke_capability("probe", "events.publish:probe.*")
            .expect("revoke");
        revoked.store(true, Ordering::SeqCst);
        for caller in callers {
            let (b, a) = caller.join().expect("caller");
            before += b;
            after += a;
        }
    });
    assert!(
        before > 0 && after > 0,
        "the race happened: {before} allowed before, {after} denied after"
    );
}

#[test]
fn a_required_capability_not_granted_refuses_the_plugin_and_says_how_to_grant_it() {
    let dir = TempPluginDir::with(&["kv-counter"]);
    let (_host, report) = dir.load("");
    let entry = report.refused().next().expect("refused");
    assert_eq!(entry.reason.map(|r| r.code()), Some("not_granted"));
    assert!(
        entry.detail.contains("kv") && entry.detail.contains("[plugins.kv-counter]"),
        "{}",
        entry.detail
    );
}

#[test]
fn keys_never_escape_the_namespace() {
    let dir = TempPluginDir::with(&["probe", "kv-counter"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.probe]\ngrants = [\"kv\"]\n[plugins.kv-counter]\ngrants = [\"kv\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    for key in [
        "../kv-counter/count",
        "kv/kv-counter",
        "count\0",
        "/count",
        "kv-counter/count",
    ] {
        let set = host
            .call("probe", "kv_set")
            .json(&json!({ "key": key, "value": 99 }))
            .expect("call");
        assert_eq!(set, Reply::Ok(Value::Null), "{key:?}");
    }
    assert_eq!(
        host.call("kv-counter", "get")
            .json(&Value::Null)
            .expect("call"),
        Reply::Ok(0.into())
    );
    let long = "k".repeat(airlock::services::MAX_KEY_LEN + 1);
    match host
        .call("probe", "kv_set")
        .json(&json!({ "key": long, "value": 1 }))
        .expect("call")
    {
        Reply::Error(e) => assert!(e.contains("at most"), "{e}"),
        other => panic!("an over-long key was accepted: {other:?}"),
    }
    let keys = host
        .call("probe", "kv_keys")
        .json(&json!({}))
        .expect("call");
    assert_eq!(
        keys,
        Reply::Ok(json!([
            "../kv-counter/count",
            "/count",
            "count\0",
            "kv-counter/count",
            "kv/kv-counter"
        ]))
    );
    assert_eq!(
        host.call("kv-counter", "increment")
            .json(&Value::Null)
            .expect("call"),
        Reply::Ok(1.into())
    );
    assert_eq!(
        host.call("probe", "kv_get")
            .json(&json!({ "key": "count" }))
            .expect("call"),
        Reply::Ok(Value::Null),
        "probe must not see kv-counter's key"
    );
}

//! Scopes of the kv store through real plugins: a scope dropped across two plugins in one
//! step while they read and write, scopes that a hostile plugin cannot alias, and every
//! operation in a scope. (Sealed values are in `sealed_kv.rs`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

fn call(host: &Host, plugin: &str, action: &str, input: &Value) -> Reply {
    host.call(plugin, action)
        .json(input)
        .unwrap_or_else(|e| panic!("{plugin}.{action}: {e}"))
}

fn ok(host: &Host, plugin: &str, action: &str, input: &Value) -> Value {
    match call(host, plugin, action, input) {
        Reply::Ok(v) => v,
        other => panic!("{plugin}.{action} {input}: {other:?}"),
    }
}

fn refused(host: &Host, plugin: &str, action: &str, input: &Value) -> String {
    match call(host, plugin, action, input) {
        Reply::Error(message) => message,
        other => panic!("{plugin}.{action} {input} was not refused: {other:?}"),
    }
}

fn scope(kind: &str, id: &str) -> Value {
    json!({"kind": kind, "id": id})
}

/// The keys starting with `k` the plugin sees in the scope `project/p1`.
fn p1_keys(host: &Host, plugin: &str) -> usize {
    let input = match plugin {
        "ledger" => json!({"scope": scope("project", "p1"), "key": "k"}),
        _ => json!({"scope": ["project", "p1"], "prefix": "k"}),
    };
    let action = if plugin == "ledger" {
        "keys"
    } else {
        "kv_keys"
    };
    ok(host, plugin, action, &input)
        .as_array()
        .expect("keys")
        .len()
}

#[test]
fn a_scope_dropped_across_two_plugins_goes_whole_and_leaves_every_other_key() {
    let dir = TempPluginDir::with(&["probe", "ledger"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.probe]\ngrants = [\"kv\"]\n[plugins.ledger]\ngrants = [\"kv\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let host = Arc::new(host);
    // Both plugins: 100 keys in project/p1, one in project/p2 and one unscoped.
    ok(
        &host,
        "ledger",
        "fill",
        &json!({"scope": scope("project", "p1"), "key": "k", "n": 100, "value": "l1"}),
    );
    ok(
        &host,
        "ledger",
        "put",
        &json!({"scope": scope("project", "p2"), "key": "k0", "value": "l2"}),
    );
    ok(&host, "ledger", "put", &json!({"key": "k0", "value": "l"}));
    for i in 0..100 {
        let key = format!("k{i}");
        ok(
            &host,
            "probe",
            "kv_set",
            &json!({"scope": ["project", "p1"], "key": key, "value": "p1"}),
        );
    }
    ok(
        &host,
        "probe",
        "kv_set",
        &json!({"scope": ["project", "p2"], "key": "k0", "value": "p2"}),
    );
    ok(
        &host,
        "probe",
        "kv_set",
        &json!({"key": "k0", "value": "p"}),
    );
    assert_eq!(
        (p1_keys(&host, "ledger"), p1_keys(&host, "probe")),
        (100, 100)
    );

    // While a writer fills project/p1 again and again (100 keys in one batch) and readers
    // list it in both plugins, the scope is dropped, again and again: every listing holds
    // all 100 keys or none, never part of a drop.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (host, stop) = (host.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let input =
                    json!({"scope": scope("project", "p1"), "key": "k", "n": 100, "value": rounds});
                ok(&host, "ledger", "fill", &input);
                rounds += 1;
            }
            rounds
        })
    };
    let readers: Vec<_> = ["ledger", "probe"]
        .into_iter()
        .map(|plugin| {
            let (host, stop) = (host.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.push(p1_keys(&host, plugin));
                }
                (plugin, seen)
            })
        })
        .collect();
    let mut dropped = 0;
    for _ in 0..30 {
        dropped += host.drop_scope("project", "p1").expect("dropped");
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().expect("writer");
    for reader in readers {
        let (plugin, seen) = reader.join().expect("reader");
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|&n| n == 0 || n == 100),
            "{plugin} saw part of a scope: {seen:?}"
        );
        if plugin == "probe" {
            // Probe's keys went with the first drop and never came back.
            let first_empty = seen.iter().position(|&n| n == 0).unwrap_or(seen.len());
            assert!(seen[first_empty..].iter().all(|&n| n == 0), "{seen:?}");
        }
    }
    assert!(
        rounds > 0 && dropped >= 200,
        "{rounds} rounds, {dropped} keys dropped"
    );

    host.drop_scope("project", "p1").expect("dropped");
    assert_eq!((p1_keys(&host, "ledger"), p1_keys(&host, "probe")), (0, 0));
    // The other scope and the unscoped keys of both plugins are as they were.
    let p2 = json!({"scope": scope("project", "p2"), "key": "k0"});
    assert_eq!(ok(&host, "ledger", "get", &p2), json!("l2"));
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "k0"})),
        json!("l")
    );
    let p2 = json!({"scope": ["project", "p2"], "key": "k0"});
    assert_eq!(ok(&host, "probe", "kv_get", &p2), json!("p2"));
    assert_eq!(
        ok(&host, "probe", "kv_get", &json!({"key": "k0"})),
        json!("p")
    );
    // The host program's own bad scope is refused, naming the part.
    let bad = host.drop_scope("project", "p\u{0}1").expect_err("a NUL");
    assert!(bad.to_string().contains("scope id"), "{bad}");
}

#[test]
fn a_hostile_plugin_cannot_alias_a_scope_or_the_unscoped_namespace() {
    let dir = TempPluginDir::with(&["ledger"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.ledger]\ngrants = [\"kv\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    ok(
        &host,
        "ledger",
        "put",
        &json!({"scope": scope("project", "p1"), "key": "x", "value": "mine"}),
    );
    // Scope parts that would write into another scope's keys, or are too long, are refused.
    for (kind, id, says) in [
        ("project\u{0}p1", "x", "scope kind"),
        ("project", "p1\u{0}x", "scope id"),
        ("project", "p1\n", "scope id"),
        ("", "p1", "scope kind"),
        ("project", "", "scope id"),
        (&"k".repeat(65), "p1", "scope kind"),
        ("project", &"i".repeat(257), "scope id"),
    ] {
        let input = json!({"scope": scope(kind, id), "key": "", "value": "theirs"});
        let message = refused(&host, "ledger", "put", &input);
        assert!(message.contains(says), "{kind:?}/{id:?}: {message}");
    }
    // Unscoped keys and other scopes shaped like the scope's stored keys stay their own.
    for key in ["project\u{0}p1\u{0}x", "p1\u{0}x", "\u{0}x"] {
        ok(
            &host,
            "ledger",
            "put",
            &json!({"key": key, "value": "alias"}),
        );
        ok(
            &host,
            "ledger",
            "put",
            &json!({"scope": scope("project", "p10"), "key": key, "value": "alias"}),
        );
        ok(
            &host,
            "ledger",
            "put",
            &json!({"scope": scope("projec", "t"), "key": key, "value": "alias"}),
        );
    }
    let p1 = json!({"scope": scope("project", "p1"), "key": ""});
    assert_eq!(ok(&host, "ledger", "keys", &p1), json!(["x"]));
    host.drop_scope("project", "p1").expect("dropped");
    assert_eq!(ok(&host, "ledger", "keys", &p1), json!([]));
    assert_eq!(
        ok(&host, "ledger", "keys", &json!({"key": ""}))
            .as_array()
            .expect("keys")
            .len(),
        3
    );
    let near = json!({"scope": scope("project", "p10"), "key": ""});
    assert_eq!(
        ok(&host, "ledger", "keys", &near)
            .as_array()
            .expect("keys")
            .len(),
        3
    );
}

#[test]
fn every_kv_operation_works_in_a_scope_apart_from_the_unscoped_namespace() {
    let dir = TempPluginDir::with(&["probe"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.probe]\ngrants = [\"kv\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let run = json!(["run", "r-7"]);
    ok(
        &host,
        "probe",
        "kv_set",
        &json!({"key": "n", "value": "unscoped"}),
    );
    let version = ok(
        &host,
        "probe",
        "kv_batch",
        &json!({"scope": run, "prefix": "b/", "n": 3, "value": 1}),
    );
    let listed = ok(
        &host,
        "probe",
        "kv_list",
        &json!({"scope": run, "prefix": "b/"}),
    );
    assert_eq!(listed.as_array().expect("a list").len(), 3);
    assert!(listed
        .as_array()
        .expect("a list")
        .iter()
        .all(|e| e["version"] == version));
    let absent = json!({"scope": run, "key": "n", "expected": "absent", "value": 1});
    assert_eq!(
        ok(&host, "probe", "kv_cas", &absent)["written"],
        json!(true)
    );
    let entry = ok(
        &host,
        "probe",
        "kv_entry",
        &json!({"scope": run, "key": "n"}),
    );
    assert_eq!(entry["value"], json!(1));
    let by_version =
        json!({"scope": run, "key": "n", "expected": {"version": entry["version"]}, "value": 2});
    assert_eq!(
        ok(&host, "probe", "kv_cas", &by_version)["written"],
        json!(true)
    );
    // The unscoped namespace saw none of it, and lists none of the scope's keys.
    assert_eq!(
        ok(&host, "probe", "kv_get", &json!({"key": "n"})),
        json!("unscoped")
    );
    assert_eq!(
        ok(&host, "probe", "kv_keys", &json!({"prefix": ""})),
        json!(["n"])
    );
    assert_eq!(host.drop_scope("run", "r-7").expect("dropped"), 4);
    assert_eq!(
        ok(
            &host,
            "probe",
            "kv_list",
            &json!({"scope": run, "prefix": ""})
        ),
        json!([])
    );
    assert_eq!(
        ok(&host, "probe", "kv_get", &json!({"key": "n"})),
        json!("unscoped")
    );
}

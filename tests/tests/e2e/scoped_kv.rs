//! Scopes of the kv store through real plugins: a scope dropped across two plugins in one
//! step while they read and write, scopes that a hostile plugin cannot alias, and values
//! sealed with the operator's storage keys — unreadable in the file, readable through the
//! plugin, still read after a rotation, refused when moved, and never handed to a plugin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use base64::Engine as _;
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

const MARKER: &str = "4111-1111-1111-1111 card of Ada Lovelace";

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Loads `ledger` and `probe`, both sealed with `ring` (a TOML value), the storage keys A and B
/// (and B's name given A's bytes, an impostor) declared.
fn sealed(dir: &TempPluginDir, data: &std::path::Path, ring: &str) -> Host {
    let policy = format!(
        "[host]\ndata_dir = {data:?}\n\
         [secrets]\nkv-a = {{ value = \"{}\", usage = \"kv\" }}\nkv-b = {{ value = \"{}\", usage = \"kv\" }}\n\
         kv-b-impostor = {{ value = \"{}\", usage = \"kv\" }}\n\
         kv-unset = {{ env = \"AIRLOCK_TEST_UNSET_STORAGE_KEY\", usage = \"kv\" }}\n\
         [plugins.ledger]\ngrants = [\"kv\", \"secrets:*\"]\n[plugins.ledger.kv]\nencrypt = {ring}\n\
         [plugins.probe]\ngrants = [\"kv\"]\n[plugins.probe.kv]\nencrypt = {ring}\n",
        key(0xA),
        key(0xB),
        key(0xC),
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    host
}

#[test]
fn a_sealed_value_is_unreadable_in_the_file_and_read_through_the_plugin_across_a_rotation() {
    let dir = TempPluginDir::with(&["probe", "ledger"]);
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("kv.redb");
    let card = json!({"key": "card", "value": MARKER});
    let host = sealed(&dir, data.path(), "\"kv-a\"");
    ok(&host, "ledger", "put", &card);
    ok(
        &host,
        "ledger",
        "put",
        &json!({"scope": scope("customer", "ada"), "key": "card", "value": MARKER}),
    );
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "card"})),
        json!(MARKER)
    );
    // The key itself is never handed to the plugin, granted `secrets:*` though it is.
    let asked = ok(&host, "ledger", "secret", &json!("kv-a"));
    assert_eq!(
        asked,
        json!({"refused": "capability secrets:kv-a was not granted to this plugin"})
    );
    let records = format!("{:?}", host.audit().tail(usize::MAX));
    assert!(
        records.contains("is a storage key: the host seals kv values with it"),
        "{records}"
    );
    assert!(!records.contains(&key(0xA)));
    drop(host);
    let raw = std::fs::read(&file).expect("the store's file");
    assert!(!raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));

    // Rotated: B seals from now on, A still opens what it sealed. A value read is not
    // sealed again; one written is, under B.
    let host = sealed(&dir, data.path(), "[\"kv-b\", \"kv-a\"]");
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "card"})),
        json!(MARKER)
    );
    ok(
        &host,
        "ledger",
        "put",
        &json!({"key": "fresh", "value": "sealed under b"}),
    );
    drop(host);

    // A taken out of the ring: what it sealed is a clear error naming it, what B sealed reads.
    let host = sealed(&dir, data.path(), "[\"kv-b\"]");
    let message = refused(&host, "ledger", "get", &json!({"key": "card"}));
    assert!(
        message.contains("\"kv-a\"") && message.contains("does not hold"),
        "{message}"
    );
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "fresh"})),
        json!("sealed under b")
    );
    drop(host);

    // Another key's bytes under a name the value names: refused, not garbage.
    let host = sealed(&dir, data.path(), "[\"kv-b-impostor\", \"kv-a\"]");
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "card"})),
        json!(MARKER)
    );
    let message = refused(&host, "ledger", "get", &json!({"key": "fresh"}));
    assert!(
        message.contains("\"kv-b\"") && message.contains("does not hold"),
        "{message}"
    );
    drop(host);

    // A key whose variable is unset: a clear error naming the key, not a value.
    let host = sealed(&dir, data.path(), "[\"kv-unset\", \"kv-a\"]");
    let message = refused(&host, "ledger", "get", &json!({"key": "card"}));
    assert!(
        message.contains("\"kv-unset\"") && message.contains("not available"),
        "{message}"
    );
}

#[test]
fn a_sealed_value_moved_to_another_key_scope_or_plugin_is_refused() {
    let dir = TempPluginDir::with(&["probe", "ledger"]);
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("kv.redb");
    let host = sealed(&dir, data.path(), "\"kv-a\"");
    ok(
        &host,
        "ledger",
        "put",
        &json!({"key": "card", "value": MARKER}),
    );
    ok(
        &host,
        "ledger",
        "put",
        &json!({"scope": scope("customer", "ada"), "key": "card", "value": "hers"}),
    );
    drop(host);
    // Someone with the file copies the sealed bytes elsewhere, unsealed as they are.
    {
        use airlock::services::{KvScope, KvSpace, KvStore};
        let store = KvStore::open(&file).expect("opens");
        let ledger = airlock_abi::manifest::PluginId::new("ledger").expect("id");
        let probe = airlock_abi::manifest::PluginId::new("probe").expect("id");
        let bytes = store.get(&ledger, "card").expect("get").expect("stored");
        assert_eq!(bytes[0], 1, "stored sealed");
        let ada = KvScope::new("customer", "ada").expect("scope");
        store.set(&ledger, "other", &bytes).expect("set");
        store
            .set(KvSpace::of(&ledger).scoped(Some(&ada)), "card", &bytes)
            .expect("set");
        store.set(&probe, "card", &bytes).expect("set");
    }
    let host = sealed(&dir, data.path(), "\"kv-a\"");
    for (plugin, action, input) in [
        ("ledger", "get", json!({"key": "other"})),
        (
            "ledger",
            "get",
            json!({"scope": scope("customer", "ada"), "key": "card"}),
        ),
        ("probe", "kv_get", json!({"key": "card"})),
    ] {
        let message = refused(&host, plugin, action, &input);
        assert!(
            message.contains("moved from another"),
            "{plugin} {input}: {message}"
        );
    }
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "card"})),
        json!(MARKER)
    );
}

#[test]
fn an_unsealed_plugin_stores_its_values_as_they_are() {
    // The control of the sealed tests: the same marker, unsealed, is in the file.
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
        &json!({"key": "card", "value": MARKER}),
    );
    drop(host);
    let raw = std::fs::read(data.path().join("kv.redb")).expect("the store's file");
    assert!(raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
}

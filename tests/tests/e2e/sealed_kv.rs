//! Values sealed with the operator's storage keys, through real plugins: unreadable in the
//! store's file and readable through the plugin, still read after a rotation, refused when
//! moved to another key, scope or plugin or when their key is wrong or missing, refused (not
//! handed out as ciphertext) once sealing is turned off, and the key never handed to a plugin.

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use base64::Engine as _;
use serde_json::{json, Value};

fn ok(host: &Host, plugin: &str, action: &str, input: &Value) -> Value {
    match host.call(plugin, action).json(input) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("{plugin}.{action} {input}: {other:?}"),
    }
}

fn refused(host: &Host, plugin: &str, action: &str, input: &Value) -> String {
    match host.call(plugin, action).json(input) {
        Ok(Reply::Error(message)) => message,
        other => panic!("{plugin}.{action} {input} was not refused: {other:?}"),
    }
}

fn scope(kind: &str, id: &str) -> Value {
    json!({"kind": kind, "id": id})
}

const MARKER: &str = "4111-1111-1111-1111 card of Ada Lovelace";

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Loads `ledger` and `probe`, both sealed with `ring` (a TOML value), the storage keys `kv-a`,
/// `kv-b` and `kv-unset` (an unset variable) declared.
fn sealed(dir: &TempPluginDir, data: &std::path::Path, ring: &str) -> Host {
    sealed_with(dir, data, ring, 0xB)
}

/// [`sealed`], `kv-b` being 32 bytes of `b`.
fn sealed_with(dir: &TempPluginDir, data: &std::path::Path, ring: &str, b: u8) -> Host {
    let policy = format!(
        "[host]\ndata_dir = {data:?}\n\
         [secrets]\nkv-a = {{ value = \"{}\", kind = \"storage_key\" }}\nkv-b = {{ value = \"{}\", kind = \"storage_key\" }}\n\
         kv-unset = {{ env = \"AIRLOCK_TEST_UNSET_STORAGE_KEY\", kind = \"storage_key\" }}\n\
         [plugins.ledger]\ngrants = [\"kv\", \"secrets:*\"]\n[plugins.ledger.kv]\nencrypt = {ring}\n\
         [plugins.probe]\ngrants = [\"kv\"]\n[plugins.probe.kv]\nencrypt = {ring}\n",
        key(0xA),
        key(b),
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

    // Other bytes under the name the value names (a wrong key): refused, not garbage.
    let host = sealed_with(&dir, data.path(), "[\"kv-b\", \"kv-a\"]", 0xC);
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "card"})),
        json!(MARKER)
    );
    let message = refused(&host, "ledger", "get", &json!({"key": "fresh"}));
    assert!(
        message.contains("does not open with key \"kv-b\""),
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
        let bytes = stored(&file, "kv/ledger", "card");
        assert_eq!(bytes[0], 1, "stored sealed");
        let store = KvStore::open(&file).expect("opens");
        let ledger = airlock_abi::manifest::PluginId::new("ledger").expect("id");
        let probe = airlock_abi::manifest::PluginId::new("probe").expect("id");
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

/// The bytes stored for `key` in `table` of the store's `file`, read as someone who has the
/// file reads them (the store itself never hands a sealed value out unopened).
fn stored(file: &std::path::Path, table: &str, key: &str) -> Vec<u8> {
    use redb::{ReadableDatabase, TableDefinition};
    let db = redb::Database::open(file).expect("the store's file");
    let txn = db.begin_read().expect("read");
    let values = txn
        .open_table(TableDefinition::<&str, &[u8]>::new(table))
        .expect("table");
    let bytes = values
        .get(key)
        .expect("get")
        .expect("stored")
        .value()
        .to_vec();
    bytes
}

#[test]
fn a_sealed_value_read_after_sealing_is_turned_off_is_refused_naming_its_key() {
    let dir = TempPluginDir::with(&["probe", "ledger"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = sealed(&dir, data.path(), "\"kv-a\"");
    ok(
        &host,
        "ledger",
        "put",
        &json!({"key": "card", "value": MARKER}),
    );
    drop(host);
    // The operator takes `encrypt` out: the plugin is not handed the ciphertext as its value,
    // but a refusal naming the key it is sealed under and what to do.
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.ledger]\ngrants = [\"kv\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let message = refused(&host, "ledger", "get", &json!({"key": "card"}));
    assert!(
        message.contains("sealed with key \"kv-a\"")
            && message.contains("[plugins.ledger.kv] encrypt"),
        "{message}"
    );
    // What it writes now is stored as it is, and read back.
    ok(
        &host,
        "ledger",
        "put",
        &json!({"key": "plain", "value": "\u{1}not sealed"}),
    );
    assert_eq!(
        ok(&host, "ledger", "get", &json!({"key": "plain"})),
        json!("\u{1}not sealed")
    );
    // Sealing turned back on, the value reads again.
    drop(host);
    let host = sealed(&dir, data.path(), "\"kv-a\"");
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

//! The kv store's versions through real plugins: compare-and-set under two writers racing on
//! real threads, batches all or nothing, listings with values and versions. (Batches under
//! `kill -9` are in `durability.rs`.)

use std::sync::{Arc, Barrier};

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

fn ok(host: &Host, action: &str, input: &Value) -> Value {
    match host.call("probe", action).json(input) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("probe.{action}: {other:?}"),
    }
}

fn load() -> (TempPluginDir, tempfile::TempDir, Host) {
    let dir = TempPluginDir::with(&["probe"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.probe]\ngrants = [\"kv\"]\n",
        data.path()
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, data, host)
}

#[test]
fn compare_and_set_under_two_writers_lets_exactly_one_win_each_round() {
    let (_dir, _data, host) = load();
    let host = Arc::new(host);
    ok(&host, "kv_set", &json!({"key": "n", "value": 0}));
    let rounds = 50;
    for round in 0..rounds {
        let seen = ok(&host, "kv_entry", &json!({"key": "n"}));
        let version = seen["version"].as_u64().expect("a version");
        let start = Arc::new(Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|writer| {
                let (host, start) = (host.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let input = json!({
                        "key": "n",
                        "expected": {"version": version},
                        "value": {"round": round, "writer": writer},
                    });
                    ok(&host, "kv_cas", &input)
                })
            })
            .collect();
        let answers: Vec<Value> = writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect();
        let winners: Vec<usize> = (0..2)
            .filter(|&w| answers[w]["written"] == json!(true))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {answers:?}");
        let now = ok(&host, "kv_entry", &json!({"key": "n"}));
        assert_eq!(
            now["value"],
            json!({"round": round, "writer": winners[0]}),
            "round {round}"
        );
        // The winner's version is the key's; the loser saw the winner's.
        assert_eq!(now["version"], answers[winners[0]]["version"]);
        assert_eq!(answers[1 - winners[0]]["version"], now["version"]);
    }
    // A compare-and-set on a value, and on absence.
    let last = ok(&host, "kv_get", &json!({"key": "n"}));
    let by_value = json!({"key": "n", "expected": {"value": last}, "value": "done"});
    assert_eq!(ok(&host, "kv_cas", &by_value)["written"], json!(true));
    assert_eq!(ok(&host, "kv_cas", &by_value)["written"], json!(false));
    let absent = json!({"key": "n", "expected": "absent", "value": 1});
    assert_eq!(ok(&host, "kv_cas", &absent)["written"], json!(false));
}

#[test]
fn a_batch_is_written_whole_or_not_at_all_and_listed_with_its_version() {
    let (_dir, data, host) = load();
    ok(&host, "kv_set", &json!({"key": "b/old", "value": 1}));
    let version = ok(
        &host,
        "kv_batch",
        &json!({"prefix": "b/", "n": 50, "value": {"v": 7}, "delete": ["b/old"]}),
    );
    let listed = ok(&host, "kv_list", &json!({"prefix": "b/"}));
    let listed = listed.as_array().expect("a list");
    assert_eq!(listed.len(), 50);
    for entry in listed {
        assert_eq!(entry["value"], json!({"v": 7}), "{entry}");
        assert_eq!(entry["version"], version, "{entry}");
    }
    // A key over the limit in a batch: refused, and nothing of it written.
    let long_key = "k".repeat(airlock::services::MAX_KEY_LEN + 1);
    let refused = host
        .call("probe", "kv_batch")
        .json(&json!({"prefix": "c/", "n": 3, "value": 1, "delete": [long_key]}));
    assert!(
        matches!(&refused, Ok(Reply::Error(m)) if m.contains("at most")),
        "{refused:?}"
    );
    assert_eq!(ok(&host, "kv_list", &json!({"prefix": "c/"})), json!([]));
    drop(host);
    // Read back from the file.
    let store = airlock::services::KvStore::open(&data.path().join("kv.redb")).expect("opens");
    let probe = airlock_abi::manifest::PluginId::new("probe").expect("id");
    assert_eq!(store.keys(&probe, "b/").expect("keys").len(), 50);
    assert_eq!(store.get(&probe, "b/old").expect("get"), None);
}

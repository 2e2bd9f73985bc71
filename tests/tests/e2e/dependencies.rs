//! Plugins together: `depends_on` decides the order plugins are created in (whatever their file
//! names), refuses what is missing, out of range or on a cycle (and what needs it), guards
//! reloads, disable and enable; `started` runs once every plugin is created, `stopping` before
//! any is torn down — in process, in a worker process, and for built-ins.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use airlock::pipeline::PluginReport;
use airlock::plugins::PluginState;
use airlock::plugins::{ReloadOutcome, TeardownOutcome};
use airlock::{Error, Host, LoadReport, RefusalReason, Reply};
use airlock_abi::{ActionError, Actions, Builtin, Context, InitError, Plugin};
use airlock_tests::{fixture_bytes, TempPluginDir};
use serde_json::{json, Value};

/// The chain under file names whose discovery order is the reverse of its dependency order.
const TOP: &str = "a-top";
const MID: &str = "b-mid";
const BASE: &str = "c-base";

fn lib(stem: &str) -> String {
    TempPluginDir::lib_name(stem)
}

/// A directory holding `fixture` as `stem` for each pair.
fn dir_with(files: &[(&str, &str)]) -> TempPluginDir {
    let dir = TempPluginDir::new();
    for (fixture, stem) in files {
        dir.add_as(fixture, &lib(stem));
    }
    dir
}

fn chain() -> TempPluginDir {
    dir_with(&[("dep-top", TOP), ("dep-mid", MID), ("dep-base", BASE)])
}

/// Every plugin of the chain may call the others and keep a key; `extra` is appended.
fn policy(data: &Path, extra: &str) -> String {
    let mut policy = format!("[host]\ndata_dir = {data:?}\n");
    for id in ["dep-base", "dep-mid", "dep-top"] {
        policy.push_str(&format!(
            "[plugins.{id}]\ngrants = [\"plugins.call:dep-*\", \"kv\"]\n"
        ));
    }
    policy + extra
}

fn report_of(host: &Host, id: &str) -> Value {
    match host.call(id, "report").json(&Value::Null) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("{id}.report: {other:?}"),
    }
}

fn entry<'r>(report: &'r LoadReport, id: &str) -> &'r PluginReport {
    report
        .plugins
        .iter()
        .find(|p| p.id.as_deref() == Some(id))
        .unwrap_or_else(|| panic!("{id} is not in the report: {report:#?}"))
}

fn refused(report: &LoadReport, id: &str, reason: RefusalReason) -> String {
    let e = entry(report, id);
    assert_eq!(e.reason, Some(reason), "{id}: {e:#?}");
    e.detail.clone()
}

#[test]
fn plugins_are_created_in_dependency_order_and_see_started_and_stopping_whatever_their_file_names()
{
    let dir = chain();
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    assert!(report.all_ok(), "{report:#?}");
    let order: Vec<_> = report.plugins.iter().filter_map(|p| p.id.clone()).collect();
    assert_eq!(
        order,
        ["dep-base", "dep-mid", "dep-top"],
        "created in dependency order"
    );
    // Each `create` could call the plugins it depends on, and nothing created after it.
    assert_eq!(report_of(&host, "dep-base")["created"], json!([]));
    assert_eq!(report_of(&host, "dep-mid")["created"], json!(["dep-base"]));
    assert_eq!(
        report_of(&host, "dep-top")["created"],
        json!(["dep-base", "dep-mid"])
    );
    // `started` came once all were created: every plugin saw both others.
    assert_eq!(
        report_of(&host, "dep-base")["started"],
        json!(["dep-mid", "dep-top"])
    );
    assert_eq!(
        report_of(&host, "dep-top")["started"],
        json!(["dep-base", "dep-mid"])
    );
    // The report shows what satisfies each dependency; a missing optional one is fine.
    let top = entry(&report, "dep-top");
    let mid = top
        .dependencies
        .iter()
        .find(|d| d.id == "dep-mid")
        .expect("listed");
    assert!(mid.satisfied && mid.range == "^1.0", "{mid:?}");
    assert!(mid
        .found
        .as_deref()
        .is_some_and(|f| f.starts_with("1.2.0 (") && f.contains(MID)));
    let extra = top
        .dependencies
        .iter()
        .find(|d| d.id == "dep-extra")
        .expect("listed");
    assert!(
        extra.optional && extra.satisfied && extra.found.is_none(),
        "{extra:?}"
    );

    let records = host.shutdown();
    let torn: Vec<_> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        torn,
        ["dep-top", "dep-mid", "dep-base"],
        "reverse dependency order"
    );
    assert!(records
        .iter()
        .all(|r| r.outcome == TeardownOutcome::Clean && r.stopping.is_none()));
    drop(host);
    // `stopping` ran on every plugin before any was torn down: each could still call both
    // others (what it saw is in kv, read by a host started afterwards).
    let (again, _) = dir.load(&policy(data.path(), ""));
    for (id, others) in [
        ("dep-base", ["dep-mid", "dep-top"]),
        ("dep-mid", ["dep-base", "dep-top"]),
        ("dep-top", ["dep-base", "dep-mid"]),
    ] {
        assert_eq!(report_of(&again, id)["stopping"], json!(others), "{id}");
    }
}

#[test]
fn isolated_plugins_take_part_in_the_order_and_both_phases() {
    let dir = chain();
    let data = tempfile::tempdir().expect("data dir");
    let isolated = "[plugins.dep-mid]\nisolation = \"process\"\n";
    let policy = policy(data.path(), "").replace(
        "[plugins.dep-mid]\n",
        "[plugins.dep-mid]\nisolation = \"process\"\n",
    );
    assert!(policy.contains(isolated));
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(report_of(&host, "dep-mid")["created"], json!(["dep-base"]));
    assert_eq!(
        report_of(&host, "dep-mid")["started"],
        json!(["dep-base", "dep-top"])
    );
    assert_eq!(
        report_of(&host, "dep-top")["created"],
        json!(["dep-base", "dep-mid"])
    );
    host.shutdown();
    drop(host);
    let (again, _) = dir.load(&policy);
    assert_eq!(
        report_of(&again, "dep-mid")["stopping"],
        json!(["dep-base", "dep-top"])
    );
}

#[test]
fn a_missing_dependency_refuses_its_dependent_and_the_plugins_that_need_it() {
    let dir = dir_with(&[("dep-top", TOP), ("dep-mid", MID)]);
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    let mid = refused(&report, "dep-mid", RefusalReason::MissingDependency);
    assert!(
        mid.contains("plugin dep-mid needs dep-base ^1.4 (depends_on), but no plugin dep-base is loaded or found"),
        "{mid}"
    );
    let top = refused(&report, "dep-top", RefusalReason::MissingDependency);
    assert!(
        top.contains("plugin dep-top needs dep-mid ^1.0 (depends_on), but dep-mid was refused (missing_dependency)"),
        "{top}"
    );
    assert!(host.plugins().is_empty());
}

#[test]
fn a_dependency_outside_the_range_is_refused_with_both_versions_named() {
    let dir = dir_with(&[("dep-top", TOP), ("dep-mid", MID), ("dep-base-two", BASE)]);
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    let mid = refused(&report, "dep-mid", RefusalReason::DependencyVersion);
    assert!(
        mid.contains("plugin dep-mid needs dep-base ^1.4 (depends_on), but dep-base is 2.0.0 (")
            && mid.contains(&lib(BASE)),
        "{mid}"
    );
    let top = refused(&report, "dep-top", RefusalReason::MissingDependency);
    assert!(
        top.contains("dep-mid was refused (dependency_version)"),
        "{top}"
    );
    assert_eq!(
        entry(&report, "dep-base").reason,
        None,
        "the base itself loads"
    );
    assert_eq!(host.plugins().len(), 1);
}

#[test]
fn every_plugin_on_a_cycle_is_refused_naming_the_cycle_also_in_check_json() {
    let dir = dir_with(&[("dep-top", TOP), ("dep-mid", MID), ("dep-base-ring", BASE)]);
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    for (id, cycle) in [
        ("dep-base", "dep-base -> dep-top -> dep-mid -> dep-base"),
        ("dep-mid", "dep-mid -> dep-base -> dep-top -> dep-mid"),
        ("dep-top", "dep-top -> dep-mid -> dep-base -> dep-top"),
    ] {
        let detail = refused(&report, id, RefusalReason::DependencyCycle);
        assert!(detail.contains(cycle), "{detail}");
    }
    assert!(host.plugins().is_empty());
    // `airlock check` (nothing runs) says the same, with the stable code.
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("the CLI runs");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let codes: Vec<_> = json["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|p| p["reason"].as_str().unwrap_or("ok").to_owned())
        .collect();
    assert_eq!(codes, ["dependency_cycle"; 3], "{json:#}");
}

#[test]
fn airlock_check_shows_each_dependency_with_its_range_and_what_satisfies_it() {
    let dir = chain();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["check", "--format", "json"])
        .arg(dir.path())
        .output()
        .expect("the CLI runs");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mid = json["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["id"] == "dep-mid")
        .expect("dep-mid listed")
        .clone();
    let dep = &mid["dependencies"][0];
    assert_eq!(dep["id"], "dep-base");
    assert_eq!(dep["range"], "^1.4");
    assert_eq!(dep["satisfied"], true);
    assert!(
        dep["found"]
            .as_str()
            .is_some_and(|f| f.starts_with("1.4.0 (")),
        "{dep}"
    );
    let table = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("check")
        .arg(dir.path())
        .output()
        .expect("the CLI runs");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("needs dep-base ^1.4: 1.4.0 ("), "{text}");
    assert!(
        text.contains("needs dep-extra ^1 (optional): not found"),
        "{text}"
    );
}

#[test]
fn a_reload_breaking_a_dependents_range_is_refused_and_the_old_build_keeps_serving() {
    let dir = chain();
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    assert!(report.all_ok(), "{report:#?}");
    let path = dir.add_bytes(&lib(BASE), &fixture_bytes("dep-base-two"));
    match host.reload_file(&path) {
        ReloadOutcome::Refused { refusal, serving } => {
            assert_eq!(refusal.reason, RefusalReason::DependencyVersion);
            assert!(
                refusal.detail.contains(
                    "plugin dep-mid (running) needs dep-base ^1.4 (depends_on), but the new build is 2.0.0"
                ),
                "{refusal}"
            );
            assert_eq!(serving, Some(1));
        }
        other => panic!("{other}"),
    }
    assert_eq!(host.plugin("dep-base").expect("loaded").version, "1.4.0");
    assert_eq!(report_of(&host, "dep-base")["id"], "dep-base");
    // A build in range reloads, and its new instance is told `started`.
    dir.add_as("dep-base", &lib(BASE));
    match host.reload("dep-base").expect("reload") {
        ReloadOutcome::Loaded { generation, .. } => assert_eq!(generation, 2),
        other => panic!("{other}"),
    }
    assert_eq!(
        report_of(&host, "dep-base")["started"],
        json!(["dep-mid", "dep-top"])
    );
}

#[test]
fn disabling_a_dependency_takes_its_dependents_with_it_and_enable_needs_it_running() {
    let dir = chain();
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    assert!(report.all_ok(), "{report:#?}");
    let record = host.disable("dep-base").expect("disable");
    let with: Vec<_> = record.dependents.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(with, ["dep-top", "dep-mid"], "dependents first");
    for id in ["dep-base", "dep-mid", "dep-top"] {
        assert_eq!(
            host.plugin(id).expect("listed").state,
            PluginState::Disabled,
            "{id}"
        );
    }
    match host.enable("dep-top") {
        Err(Error::DependencyNotRunning {
            dependency,
            range,
            state,
            ..
        }) => {
            assert_eq!(
                (dependency.as_str(), range.as_str(), state.as_str()),
                ("dep-mid", "^1.0", "disabled")
            );
        }
        other => panic!("{other:?}"),
    }
    // A new build of a dependent whose dependency is not running is refused too.
    match host.reload("dep-top").expect("reload") {
        ReloadOutcome::Refused { refusal, .. } => {
            assert_eq!(refusal.reason, RefusalReason::MissingDependency);
            assert!(
                refusal.detail.contains("but dep-mid is disabled"),
                "{refusal}"
            );
        }
        other => panic!("{other}"),
    }
    host.enable("dep-base").expect("enable the base");
    assert_eq!(
        host.plugin("dep-mid").expect("listed").state,
        PluginState::Disabled,
        "not enabled with it"
    );
    host.enable("dep-mid").expect("enable the middle");
    host.enable("dep-top").expect("enable the top");
    assert_eq!(
        report_of(&host, "dep-top")["started"],
        json!(["dep-base", "dep-mid"])
    );
}

#[test]
fn removing_a_dependencys_library_disables_its_dependents_and_says_so() {
    let dir = chain();
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load(&policy(data.path(), ""));
    assert!(report.all_ok(), "{report:#?}");
    let (tx, rx) = std::sync::mpsc::channel();
    let _watcher = host
        .watch(std::time::Duration::from_millis(50), move |outcome| {
            let _ = tx.send(outcome.to_string());
        })
        .expect("watching");
    std::fs::remove_file(dir.path().join(lib(BASE))).expect("remove the base's library");
    let said = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the watcher saw the removal");
    assert!(
        said.contains("dep-base: its library was removed")
            && said.contains("disabled with it, as they need it: dep-top, dep-mid"),
        "{said}"
    );
    for id in ["dep-mid", "dep-top"] {
        assert_eq!(
            host.plugin(id).expect("listed").state,
            PluginState::Disabled,
            "{id}"
        );
    }
    assert!(host.plugin("dep-base").is_none(), "out of the table");
    let audited = host
        .audit()
        .tail(1000)
        .into_iter()
        .filter(|r| r.plugin == "dep-mid" && r.detail.contains("its library was removed"))
        .count();
    assert_eq!(audited, 1, "one record says why dep-mid went");
}

#[test]
fn a_panicking_started_and_an_overrunning_stopping_are_contained_and_reported() {
    let dir = chain();
    let data = tempfile::tempdir().expect("data dir");
    let extra = "[plugins.dep-base.config]\npanic_in = \"started\"\n\
                 [plugins.dep-top.config]\nsleep_in = \"stopping\"\nsleep_ms = 5000\n";
    let policy = policy(data.path(), extra).replace(
        "[plugins.dep-top]\n",
        "[plugins.dep-top]\nshutdown_deadline_ms = 300\n",
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let base = entry(&report, "dep-base");
    assert!(
        base.detail
            .contains("started panicked: dep-base panics in started"),
        "{base:?}"
    );
    assert_eq!(host.plugin("dep-base").expect("listed").stats.faults, 1);
    assert_eq!(
        host.plugin("dep-base").expect("listed").state,
        PluginState::Running
    );
    // The peers' `started` ran all the same.
    assert_eq!(
        report_of(&host, "dep-top")["started"],
        json!(["dep-base", "dep-mid"])
    );
    let records = host.shutdown();
    let top = records.iter().find(|r| r.id == "dep-top").expect("dep-top");
    assert!(
        top.stopping
            .as_deref()
            .is_some_and(|s| s.contains("stopping did not return within 300 ms")),
        "{top:?}"
    );
    for id in ["dep-mid", "dep-base"] {
        let r = records.iter().find(|r| r.id == id).expect("torn down");
        assert_eq!(
            (r.outcome.clone(), r.stopping.clone()),
            (TeardownOutcome::Clean, None),
            "{id}"
        );
    }
}

/// What the built-ins below saw created, in order.
static CREATED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// A built-in `dep-base` (the files `dep-mid` and `dep-top` depend on it) that records its
/// creation.
struct BuiltinBase;

impl Plugin for BuiltinBase {
    fn create(_: Context) -> Result<Self, InitError> {
        CREATED.lock().expect("lock").push("dep-base");
        Ok(Self)
    }

    fn actions(actions: &mut Actions<Self>) {
        actions.add("ping", |_: &Self, _: Value| {
            Ok::<_, ActionError>("dep-base")
        });
    }
}

impl Builtin for BuiltinBase {
    const MANIFEST: &'static str = r#"{"id": "dep-base", "version": "1.4.2",
        "depends_on": {"builtin-first": "^0.1"}, "actions": [{"name": "ping"}]}"#;
}

/// A built-in the built-in base depends on, registered after it.
struct BuiltinFirst;

impl Plugin for BuiltinFirst {
    fn create(_: Context) -> Result<Self, InitError> {
        CREATED.lock().expect("lock").push("builtin-first");
        Ok(Self)
    }
}

impl Builtin for BuiltinFirst {
    const MANIFEST: &'static str = r#"{"id": "builtin-first", "version": "0.1.0"}"#;
}

#[test]
fn plugins_depend_on_built_ins_and_built_ins_on_each_other() {
    let dir = dir_with(&[("dep-top", TOP), ("dep-mid", MID)]);
    let data = tempfile::tempdir().expect("data dir");
    let (host, report) = dir.load_with(&policy(data.path(), ""), |builder| {
        builder.builtin::<BuiltinBase>().builtin::<BuiltinFirst>()
    });
    assert!(report.all_ok(), "{report:#?}");
    assert_eq!(
        *CREATED.lock().expect("lock"),
        ["builtin-first", "dep-base"]
    );
    assert_eq!(report_of(&host, "dep-mid")["created"], json!(["dep-base"]));
    assert_eq!(
        report_of(&host, "dep-top")["created"],
        json!(["dep-base", "dep-mid"])
    );
    let torn: Vec<_> = host.shutdown().into_iter().map(|r| r.id).collect();
    assert_eq!(torn, ["dep-top", "dep-mid", "dep-base", "builtin-first"]);
}

#[test]
fn validate_loads_the_plugins_a_library_depends_on_when_given_them() {
    let dir = chain();
    let (mid, base) = (dir.path().join(lib(MID)), dir.path().join(lib(BASE)));
    let validate = |with: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
        cmd.arg("validate").arg(&mid);
        for library in with {
            cmd.arg("--with").arg(library);
        }
        let out = cmd.output().expect("airlock validate runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (passed, said) = validate(&[]);
    assert!(!passed, "{said}");
    assert!(
        said.contains("missing_dependency") && said.contains("--with FILE"),
        "{said}"
    );
    let (passed, said) = validate(&[&base]);
    assert!(passed, "{said}");
    assert!(said.contains("action report with empty input"), "{said}");
}

//! One list of membrane rules, two runs: the probe loaded from its library by a host, and the
//! same plugin type on the authors' test harness. The harness is the real runtime, so every
//! rule must come out the same — names, limits, self-calls, and every capability granted or
//! not. (A test binary of its own: it links the probe's type, which exports a library symbol.)

use airlock::testing::TestHost;
use airlock::Reply;
use airlock_fixture_probe::probe::Probe;
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const CAPABILITIES: [&str; 11] = [
    "kv",
    "events.publish",
    "events.subscribe",
    "timers",
    "secrets",
    "plugins.call",
    "service",
    "plugins.list",
    "dispatch",
    "hooks.run",
    "host.control",
];

/// Every grant the probe declares.
const ALL_GRANTS: [&str; 11] = [
    "kv",
    "events.publish:probe.*",
    "events.subscribe:probe.*",
    "timers",
    "secrets:probe_secret",
    "plugins.call:*",
    "service:probe.*",
    "plugins.list",
    "dispatch:probe.*",
    "hooks.run:probe.*",
    "host.control",
];

/// What a call came to, whoever ran it: the answer, the domain error, or the failure code.
type Outcome = Result<Reply, String>;

/// A run: how to call the probe's actions, and how many denials it has been audited for.
type Run = (Box<dyn Fn(&str, &Value) -> Outcome>, Box<dyn Fn() -> usize>);

/// Starts a run for one grant state.
type Start = fn(bool) -> Run;

/// One rule: an action and input, and what the membrane must make of it.
struct Rule {
    name: String,
    granted: bool,
    action: &'static str,
    input: Value,
    holds: Box<dyn Fn(&Outcome) -> bool>,
}

fn rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for granted in [true, false] {
        for capability in CAPABILITIES {
            let expected = if granted {
                "allowed"
            } else {
                "capability_violation"
            };
            rules.push(Rule {
                name: format!(
                    "{capability} {}",
                    if granted { "granted" } else { "not granted" }
                ),
                granted,
                action: "use",
                input: json!({ "capability": capability }),
                holds: Box::new(move |o| matches!(o, Ok(Reply::Ok(v)) if v["outcome"] == expected)),
            });
        }
    }
    let error_containing = |needle: &'static str| -> Box<dyn Fn(&Outcome) -> bool> {
        Box::new(move |o| matches!(o, Ok(Reply::Error(m)) if m.contains(needle)))
    };
    rules.push(Rule {
        name: "a kv key over 1 KiB is refused".into(),
        granted: true,
        action: "kv_set",
        input: json!({ "key": "k".repeat(1025), "value": 1 }),
        holds: error_containing("1024"),
    });
    rules.push(Rule {
        name: "a kv key of 1 KiB is taken".into(),
        granted: true,
        action: "kv_set",
        input: json!({ "key": "k".repeat(1024), "value": 1 }),
        holds: Box::new(|o| matches!(o, Ok(Reply::Ok(Value::Null)))),
    });
    rules.push(Rule {
        name: "an empty topic is refused before the capability check".into(),
        granted: true,
        action: "publish_to",
        input: json!(""),
        holds: Box::new(|o| {
            matches!(o, Ok(Reply::Ok(v)) if v["outcome"] == "error" && v["detail"].as_str().is_some_and(|d| d.contains("topic")))
        }),
    });
    rules.push(Rule {
        name: "a topic outside the grant is a violation".into(),
        granted: true,
        action: "publish_to",
        input: json!("other.topic"),
        holds: Box::new(
            |o| matches!(o, Ok(Reply::Ok(v)) if v["outcome"] == "capability_violation"),
        ),
    });
    rules.push(Rule {
        name: "a plugin cannot call itself".into(),
        granted: true,
        action: "call_plugin",
        input: json!({ "plugin": "probe", "action": "use" }),
        holds: Box::new(|o| {
            matches!(o, Ok(Reply::Ok(v)) if v["detail"].as_str().is_some_and(|d| d.contains("itself")))
        }),
    });
    rules.push(Rule {
        name: "a call to a plugin that is not there is not_found".into(),
        granted: true,
        action: "call_plugin",
        input: json!({ "plugin": "nobody", "action": "x" }),
        holds: Box::new(|o| matches!(o, Ok(Reply::Ok(v)) if v["detail"] == "not_found")),
    });
    rules.push(Rule {
        // The `timers granted` rule above already scheduled one job.
        name: "at most 64 timer jobs".into(),
        granted: true,
        action: "many_timers",
        input: json!(70),
        holds: Box::new(|o| matches!(o, Ok(Reply::Ok(v)) if v == &json!(63))),
    });
    rules.push(Rule {
        name: "an input that does not decode is bad_input".into(),
        granted: true,
        action: "use",
        input: json!({ "nothing": 1 }),
        holds: Box::new(|o| matches!(o, Err(code) if code == "bad_input")),
    });
    rules
}

/// The loaded library's run: one host per grant state.
fn library(granted: bool) -> Run {
    let dir = TempPluginDir::with(&["probe"]);
    let data = tempfile::tempdir().expect("data dir");
    let grants = if granted {
        ALL_GRANTS.to_vec()
    } else {
        Vec::new()
    };
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[secrets]\nprobe_secret = \"s\"\n[plugins.probe]\ngrants = {:?}\n",
        data.path().display().to_string(),
        grants
    );
    let (host, report) = dir.load(&policy);
    assert!(report.refused().next().is_none(), "{report:#?}");
    let host = std::rc::Rc::new(host);
    let keep = std::rc::Rc::new((dir, data));
    let (h, k) = (host.clone(), keep.clone());
    let call = Box::new(move |action: &str, input: &Value| {
        let _ = &k;
        match h.call("probe", action).json(input) {
            Ok(pending @ Reply::PendingApproval(_)) => panic!("no rule asks: {pending:?}"),
            answered => answered.map_err(|e| e.code.code().to_owned()),
        }
    });
    let denials = Box::new(move || {
        let _ = &keep;
        host.audit()
            .tail(usize::MAX)
            .iter()
            .filter(|r| r.plugin == "probe" && r.outcome == airlock::services::AuditOutcome::Denied)
            .count()
    });
    (call, denials)
}

/// The harness's run.
fn harness(granted: bool) -> Run {
    let grants: Vec<&str> = if granted {
        ALL_GRANTS.to_vec()
    } else {
        Vec::new()
    };
    let probe = TestHost::new()
        .operation::<airlock_contract_probe::Ping>(airlock_tests::probe_ping)
        .operation::<airlock_contract_probe::Fail>(airlock_tests::probe_fail)
        .grants(&grants)
        .secret("probe_secret", "s")
        .create::<Probe>()
        .expect("created");
    let probe = std::rc::Rc::new(probe);
    let p = probe.clone();
    let call = Box::new(move |action: &str, input: &Value| {
        p.call::<_, Value>(action, input)
            .map_err(|e| e.code.code().to_owned())
    });
    let denials = Box::new(move || probe.denials().len());
    (call, denials)
}

#[test]
fn the_harness_and_the_loaded_library_keep_the_same_membrane_rules() {
    let runs: [(&str, Start); 2] = [("loaded library", library), ("test harness", harness)];
    let mut denials_per_run = Vec::new();
    for (run, start) in runs {
        let mut denials = 0;
        for granted in [true, false] {
            let (call, denied) = start(granted);
            for rule in rules().iter().filter(|r| r.granted == granted) {
                let outcome = call(rule.action, &rule.input);
                assert!(
                    (rule.holds)(&outcome),
                    "{run}: rule {:?} does not hold: {outcome:?}",
                    rule.name
                );
            }
            denials += denied();
        }
        denials_per_run.push(denials);
    }
    assert_eq!(
        denials_per_run[0], denials_per_run[1],
        "both runs write the same audit records"
    );
    assert!(denials_per_run[0] >= 7, "{denials_per_run:?}");
}

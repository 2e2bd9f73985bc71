//! Events declared and routed, with real loaded libraries: `orders` publishes `orders.created`
//! (a topic its manifest declares with a payload schema), `fulfil` is the target of the
//! policy's routines (and a subscriber of `orders.*`). A routine runs for a matching event —
//! published by a plugin or by the host program — and not for another payload or topic; the
//! target sees the publisher as its caller, under its own permission rules; a retryable
//! answer is retried; a payload that breaks its topic's schema is refused with the schema's
//! message and delivered nowhere; the catalog lists declared and seen topics; `airlock
//! inspect` lists a library's declared topics without running it.

use std::time::{Duration, Instant};

use airlock::call::CallerInfo;
use airlock::events::RoutineOutcome;
use airlock::services::AuditOutcome;
use airlock::{CallErrorCode, Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const GRANTS: &str = r#"
[plugins.orders]
grants = ["events.publish:orders.*"]

[plugins.fulfil]
grants = ["events.subscribe:orders.*", "events.publish:orders.*"]
"#;

/// A routine shipping paid orders, whoever publishes them.
const SHIP_PAID: &str = r#"
[[routines]]
name = "ship-paid"
topic = "orders.*"
match = { "/status" = "paid" }
plugin = "fulfil"
action = "ship"
"#;

fn load(policy: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["orders", "fulfil"]);
    let (host, report) = dir.load(&format!("{GRANTS}{policy}"));
    assert!(
        report.plugins.iter().all(|p| p.reason.is_none()),
        "{report:?}"
    );
    (dir, host)
}

fn call(host: &Host, plugin: &str, action: &str, input: &Value) -> Value {
    match host.call(plugin, action).json(input) {
        Ok(Reply::Ok(value)) => value,
        other => panic!("{plugin}.{action}: {other:?}"),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn records(host: &Host, outcome: AuditOutcome) -> Vec<airlock::services::AuditRecord> {
    host.audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.outcome == outcome)
        .collect()
}

#[test]
fn a_routine_calls_its_target_for_matching_events_on_behalf_of_the_publisher() {
    let (_dir, host) = load(SHIP_PAID);
    let order = |id: &str, status: &str| json!({"id": id, "total": 5, "status": status});
    assert_eq!(
        call(&host, "orders", "place", &order("1", "paid")),
        json!({"queued": 1}),
        "fulfil subscribes to orders.*"
    );
    // Another payload, another topic: no routine. A matching event of the host program: one.
    call(&host, "orders", "place", &order("2", "open"));
    host.publish("billing.created", &json!({"id": "x", "status": "paid"}));
    host.publish("orders.imported", &order("3", "paid"));

    // Runs happen in the order the events were published: once the last has run, the others
    // would have too.
    wait_until("two routine runs", || host.routine_runs().len() == 2);
    let shipped = call(&host, "fulfil", "shipped", &Value::Null);
    let ids: Vec<&Value> = shipped
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| &s["input"]["id"])
        .collect();
    assert_eq!(ids, [&json!("1"), &json!("3")], "{shipped}");
    let caller = |n: usize| -> CallerInfo {
        serde_json::from_value(shipped[n]["caller"].clone()).expect("a caller")
    };
    assert!(
        matches!(caller(0), CallerInfo::Plugin { ref id, generation: 1 } if id == "orders"),
        "the target sees the publishing plugin: {shipped}"
    );
    assert_eq!(caller(1), CallerInfo::Host { principal: None });

    let runs = host.routine_runs();
    assert!(runs
        .iter()
        .all(|r| r.outcome == RoutineOutcome::Ok && r.attempts == 1));
    assert_eq!(
        (runs[0].topic.as_str(), runs[1].topic.as_str()),
        ("orders.created", "orders.imported")
    );
    // One audit record per run, naming the routine and the publisher.
    let audited = records(&host, AuditOutcome::Routine);
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!(audited[0].capability, "routine:ship-paid");
    assert_eq!(audited[0].plugin, "fulfil");
    assert!(matches!(&audited[0].caller, Some(CallerInfo::Plugin { id, .. }) if id == "orders"));
    assert!(
        audited[0].detail.contains("answered"),
        "{}",
        audited[0].detail
    );
    assert_eq!(audited[0].schema, airlock::services::AUDIT_SCHEMA);
}

#[test]
fn a_routine_a_permission_rule_denies_is_refused_audited_and_the_host_stays_up() {
    let (_dir, host) = load(&format!(
        r#"{SHIP_PAID}
[[plugins.fulfil.permissions]]
actions = ["ship"]
callers = ["plugin:orders"]
decision = "deny"

[[routines]]
name = "to-nowhere"
topic = "orders.created"
plugin = "absent"
action = "ship"
"#
    ));
    call(
        &host,
        "orders",
        "place",
        &json!({"id": "1", "total": 1, "status": "paid"}),
    );
    wait_until("both routines", || host.routine_runs().len() == 2);
    let runs = host.routine_runs();
    let by = |name: &str| runs.iter().find(|r| r.routine == name).expect(name);
    let denied = by("ship-paid");
    assert_eq!(
        denied.outcome,
        RoutineOutcome::Failed(CallErrorCode::PermissionDenied),
        "{denied:?}"
    );
    assert!(denied.detail.contains("plugin orders"), "{}", denied.detail);
    let nowhere = by("to-nowhere");
    assert_eq!(nowhere.outcome, RoutineOutcome::NotRunning);
    assert_eq!(nowhere.attempts, 0);
    // The rule's denial is audited as any denial is, with the publisher as caller, and so is
    // each run.
    let refused = records(&host, AuditOutcome::PermissionDenied);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].capability, "action:ship");
    assert!(matches!(&refused[0].caller, Some(CallerInfo::Plugin { id, .. }) if id == "orders"));
    let audited = records(&host, AuditOutcome::Routine);
    assert_eq!(audited.len(), 2);
    assert!(audited
        .iter()
        .any(|r| r.plugin == "absent" && r.detail.contains("not running")));
    assert_eq!(
        call(&host, "fulfil", "shipped", &Value::Null),
        json!([]),
        "nothing ran"
    );

    // The rule is about the publisher: the host program's event runs the same routine.
    host.publish("orders.imported", &json!({"id": "2", "status": "paid"}));
    wait_until("the host's run", || host.routine_runs().len() == 3);
    assert_eq!(host.routine_runs()[2].outcome, RoutineOutcome::Ok);
}

#[test]
fn a_retryable_answer_is_retried_within_the_routines_bounds() {
    let (_dir, host) = load(
        r#"
[plugins.fulfil.config]
fail_first = 2

[[routines]]
name = "flaky"
topic = "orders.created"
plugin = "fulfil"
action = "flaky"
retries = 3
backoff_ms = 1
backoff_max_ms = 5

[[routines]]
name = "flaky-once"
topic = "orders.cancelled"
plugin = "fulfil"
action = "flaky"
retries = 0
"#,
    );
    host.publish("orders.created", &json!({"id": "1"}));
    wait_until("the run", || host.routine_runs().len() == 1);
    let run = &host.routine_runs()[0];
    assert_eq!(
        (run.outcome.clone(), run.attempts),
        (RoutineOutcome::Ok, 3),
        "{run:?}"
    );
    let shipped = call(&host, "fulfil", "shipped", &Value::Null);
    assert_eq!(shipped[0]["input"], json!({"id": "1"}), "{shipped}");
}

#[test]
fn a_publication_that_breaks_its_topics_schema_is_refused_and_delivered_nowhere() {
    let (_dir, host) = load(
        r#"
[[routines]]
name = "ship-all"
topic = "orders.*"
plugin = "fulfil"
action = "ship"
"#,
    );
    let refused = call(
        &host,
        "orders",
        "place",
        &json!({"id": "1", "total": "lots"}),
    );
    let message = refused["refused"].as_str().expect("refused");
    assert!(
        message.contains("bad request")
            && message
                .contains("the payload of orders.created does not match its schema at /total"),
        "{message}"
    );
    // The declaration binds every publisher of the topic: fulfil, whose grant covers it,
    // cannot publish what orders' schema refuses either.
    let forged = call(
        &host,
        "fulfil",
        "publish",
        &json!({"topic": "orders.created", "payload": {"id": "9", "total": "free"}}),
    );
    let message = forged["refused"].as_str().expect("refused");
    assert!(
        message.contains("does not match its schema at /total")
            && message.contains("the schema plugin orders declares for it"),
        "{message}"
    );
    let audited = records(&host, AuditOutcome::EventRefused);
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert_eq!(audited[0].plugin, "orders");
    assert_eq!(audited[0].capability, "events.publish:orders.created");
    assert_eq!(audited[1].plugin, "fulfil");
    // An undeclared topic the grant covers is published unchecked; a valid payload on the
    // declared one goes through.
    assert_eq!(
        call(
            &host,
            "orders",
            "publish",
            &json!({"topic": "orders.noted", "payload": "anything"})
        ),
        json!({"queued": 1})
    );
    assert_eq!(
        call(&host, "orders", "place", &json!({"id": "2", "total": 3})),
        json!({"queued": 1})
    );
    // Delivered in order: once the last has arrived, the refused one would have been first.
    wait_until("two deliveries", || {
        call(&host, "fulfil", "heard", &Value::Null)
            .as_array()
            .is_some_and(|h| h.len() == 2)
    });
    wait_until("two routine runs", || host.routine_runs().len() == 2);
    let heard = call(&host, "fulfil", "heard", &Value::Null);
    assert_eq!(
        heard,
        json!([
            {"topic": "orders.noted", "payload": "anything"},
            {"topic": "orders.created", "payload": {"id": "2", "total": 3}}
        ])
    );
    let topics: Vec<String> = host.routine_runs().into_iter().map(|r| r.topic).collect();
    assert_eq!(topics, ["orders.noted", "orders.created"]);
}

#[test]
fn the_catalog_lists_declared_and_seen_topics() {
    let (_dir, host) = load("");
    let catalog = host.event_catalog();
    let declared: Vec<(&str, &str, bool)> = catalog
        .declared
        .iter()
        .map(|d| (d.topic.as_str(), d.plugin.as_str(), d.schema.is_some()))
        .collect();
    assert_eq!(
        declared,
        [
            ("orders.created", "orders", true),
            ("orders.cancelled", "orders", false)
        ]
    );
    assert_eq!(catalog.declared[0].description, "An order was placed");
    assert!(catalog.seen.is_empty());

    call(&host, "orders", "place", &json!({"id": "1", "total": 1}));
    call(&host, "orders", "place", &json!({"id": "1", "total": -1})); // refused: not counted
    host.publish("orders.created", &json!({}));
    host.publish("misc.ping", &json!(null));
    let seen = host.event_catalog().seen;
    let summary: Vec<(&str, Vec<&str>, u64)> = seen
        .iter()
        .map(|s| {
            let publishers = s.publishers.iter().map(String::as_str).collect();
            (s.topic.as_str(), publishers, s.count)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("misc.ping", vec!["host"], 1),
            ("orders.created", vec!["orders", "host"], 2)
        ]
    );
    // The console shows the same catalog.
    let (_, shown) = airlock_cli::Console::new(&host).line("/events");
    assert!(
        shown.contains("declared orders.created by orders - An order was placed (schema {")
            && shown.contains(
                "declared orders.cancelled by orders - An order was cancelled (no schema)"
            )
            && shown.contains("seen orders.created from orders, host: 2 time(s)"),
        "{shown}"
    );
}

#[test]
fn inspect_lists_the_declared_topics_of_a_library_never_loaded() {
    let dir = TempPluginDir::with(&["orders"]);
    let file = dir.path().join(TempPluginDir::lib_name("orders"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .arg("inspect")
        .arg(&file)
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("event:        orders.created - An order was placed")
            && stdout.contains("event:        orders.cancelled - An order was cancelled")
            && stdout.contains(r#""required":["id","total"]}"#)
            && stdout.contains("  payload:    {"),
        "{stdout}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["inspect", "--format", "json"])
        .arg(&file)
        .output()
        .expect("the CLI runs");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["manifest"]["events"][0]["topic"], "orders.created");
    assert_eq!(
        json["manifest"]["events"][0]["schema"]["required"],
        json!(["id", "total"])
    );
}

#[test]
fn routines_that_start_each_other_stop_at_the_depth_limit() {
    // Each run has `orders` publish the payload's inner event, which runs the routine again.
    let (_dir, host) = load(
        r#"
[[routines]]
name = "again"
topic = "orders.loop"
plugin = "orders"
action = "publish"
"#,
    );
    let depth = airlock::events::MAX_ROUTINE_DEPTH as usize;
    let mut event = json!({"topic": "orders.loop", "payload": {"end": true}});
    for _ in 0..depth + 3 {
        event = json!({"topic": "orders.loop", "payload": event});
    }
    host.publish("orders.loop", &event["payload"]);
    // The last run's publication is refused while it runs; then it ends, and nothing follows.
    wait_until("the run past the limit", || {
        host.routine_runs_dropped() == 1 && host.routine_runs().len() == depth
    });
    let runs = host.routine_runs();
    assert_eq!(runs.len(), depth, "{runs:?}");
    assert!(runs.iter().all(|r| r.outcome == RoutineOutcome::Ok));
    // The first was started by the host, the others by orders' publications.
    assert_eq!(runs[0].publisher, CallerInfo::Host { principal: None });
    assert!(matches!(&runs[1].publisher, CallerInfo::Plugin { id, .. } if id == "orders"));
}

#[test]
fn routines_fed_through_a_subscriber_stop_at_the_depth_limit_too() {
    // The routine has `orders` publish `orders.pong`; fulfil, subscribed, answers each pong
    // with `orders.ping` from the dispatcher's thread, which runs the routine again.
    let (_dir, host) = load(
        r#"
[[routines]]
name = "ping"
topic = "orders.ping"
plugin = "orders"
action = "publish"
"#,
    );
    let depth = airlock::events::MAX_ROUTINE_DEPTH as usize;
    host.publish(
        "orders.ping",
        &json!({"topic": "orders.pong", "payload": {"n": 1}}),
    );
    wait_until("the run past the limit", || {
        host.routine_runs_dropped() == 1 && host.routine_runs().len() == depth
    });
    // Nothing follows: the loop ended.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(host.routine_runs().len(), depth);
    assert_eq!(host.routine_runs_dropped(), 1);
    let runs = host.routine_runs();
    assert!(matches!(&runs[1].publisher, CallerInfo::Plugin { id, .. } if id == "fulfil"));
}

#[test]
fn a_load_warns_of_each_routine_whose_target_is_not_there() {
    let dir = TempPluginDir::with(&["orders", "fulfil"]);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "{GRANTS}{SHIP_PAID}\n[[routines]]\nname = \"to-nobody\"\ntopic = \"orders.*\"\n\
             plugin = \"absent\"\naction = \"ship\"\n\n[[routines]]\nname = \"no-such-action\"\n\
             topic = \"orders.*\"\nplugin = \"fulfil\"\naction = \"fly\"\n"
        ),
    )
    .expect("policy");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["check", "--load", "--policy"])
        .arg(&policy)
        .arg(dir.path())
        .output()
        .expect("airlock check runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "routine \"to-nobody\" (orders.* -> absent.ship): no plugin absent is loaded"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("routine \"no-such-action\" (orders.* -> fulfil.fly): plugin fulfil declares no action \"fly\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"ship-paid\""),
        "its target is there: {stderr}"
    );
}

//! Services of the embedding program behind the membrane: a real host offers the `probe`
//! service of the test interface crate (`airlock-contract-probe`), and the `probe` fixture,
//! built against the same crate, calls it.

use airlock::services::AuditOutcome;
use airlock::Host;
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const GRANTED: &str = "[plugins.probe]\ngrants = [\"service:probe.*\"]\n";

fn service(host: &Host, plugin: &str, which: &str) -> Value {
    match host
        .call(plugin, "service")
        .json(&json!(which))
        .expect("the probe answers")
    {
        airlock::Reply::Ok(v) => v,
        other => panic!("probe failed: {other:?}"),
    }
}

fn denials(host: &Host, plugin: &str) -> Vec<String> {
    host.audit()
        .tail(usize::MAX)
        .iter()
        .filter(|r| r.plugin == plugin && r.outcome == AuditOutcome::Denied)
        .map(|r| r.capability.clone())
        .collect()
}

#[test]
fn a_service_operation_is_served_with_its_caller_and_only_within_the_grant() {
    let dir = TempPluginDir::with(&["probe", "probe-bare"]);
    let (host, report) = dir.load(
        "[plugins.probe]\ngrants = [\"service:probe.ping\"]\n\
         [plugins.probe-bare]\ngrants = [\"service:probe.*\"]\n",
    );
    assert!(report.all_ok(), "{report:#?}");

    // Granted: served, and the handler sees who called.
    let answer = service(&host, "probe", "ping");
    assert_eq!(answer["outcome"], "allowed", "{answer}");
    assert_eq!(answer["answer"], "pong to probe (generation 1): hi");

    // Scope miss: `fail` is declared (`service:probe.*`) but only `ping` is granted.
    let answer = service(&host, "probe", "fail_error");
    assert_eq!(answer["outcome"], "capability_violation", "{answer}");
    assert_eq!(answer["capability"], "service:probe.fail");

    // Not declared: the bare probe is granted everything but declares nothing.
    let answer = service(&host, "probe-bare", "ping");
    assert_eq!(answer["outcome"], "capability_violation", "{answer}");
    assert_eq!(answer["capability"], "service:probe.ping");

    // Revoked at run time: the next call is denied.
    let removed = host
        .revoke_capability("probe", "service:probe.ping")
        .expect("revoked");
    assert_eq!(removed.len(), 1, "{removed:?}");
    let answer = service(&host, "probe", "ping");
    assert_eq!(answer["outcome"], "capability_violation", "{answer}");

    // Exactly one audit record per denial, naming the capability.
    assert_eq!(
        denials(&host, "probe"),
        ["service:probe.fail", "service:probe.ping"]
    );
    assert_eq!(denials(&host, "probe-bare"), ["service:probe.ping"]);
}

#[test]
fn a_declared_operation_the_operator_did_not_grant_is_denied() {
    let dir = TempPluginDir::with(&["probe"]);
    let (host, report) = dir.load("[plugins.probe]\ngrants = []\n");
    assert!(report.all_ok(), "{report:#?}");
    let answer = service(&host, "probe", "ping");
    assert_eq!(answer["outcome"], "capability_violation", "{answer}");
    assert_eq!(denials(&host, "probe"), ["service:probe.ping"]);
    // The denial's record names who asked for the call the plugin was serving.
    let ada = airlock::Principal::new("ada", &["editor"]);
    let answer = match host
        .call("probe", "service")
        .as_principal(&ada)
        .json(&json!("ping"))
    {
        Ok(airlock::Reply::Ok(v)) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(answer["outcome"], "capability_violation", "{answer}");
    let callers: Vec<_> = host
        .audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.outcome == AuditOutcome::Denied)
        .map(|r| r.caller)
        .collect();
    assert_eq!(
        callers,
        [
            Some(airlock::call::CallerInfo::Host { principal: None }),
            Some(airlock::call::CallerInfo::Host {
                principal: Some(ada)
            })
        ]
    );
}

#[test]
fn service_errors_and_panics_come_back_as_errors_and_the_host_goes_on() {
    let dir = TempPluginDir::with(&["probe"]);
    let (host, _) = dir.load(GRANTED);
    let answer = service(&host, "probe", "fail_error");
    assert_eq!(answer["outcome"], "service_error", "{answer}");
    assert_eq!(answer["detail"], "the probe service was asked to fail");
    let answer = service(&host, "probe", "fail_panic");
    assert_eq!(answer["outcome"], "host_error", "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("panicked")),
        "{answer}"
    );
    // Still served, and the caller's generation follows a reload.
    host.reload("probe").expect("reloaded");
    let answer = service(&host, "probe", "ping");
    assert_eq!(
        answer["answer"], "pong to probe (generation 2): hi",
        "{answer}"
    );
    assert!(denials(&host, "probe").is_empty());
}

#[test]
fn a_plugin_built_against_another_version_of_the_contract_gets_a_clear_refusal() {
    let dir = TempPluginDir::with(&["probe"]);
    let (host, _) = dir.load(GRANTED);
    // The probe's `ping_v2` is `probe.ping` as version 2 of the interface crate declares it
    // (another input type); the host offers version 1.
    let answer = service(&host, "probe", "ping_v2");
    assert_eq!(answer["outcome"], "unsupported", "{answer}");
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("version 2") && detail.contains("version 1"),
        "{detail}"
    );
    // Nothing reached the handler, and nothing was misread: the host still serves version 1.
    assert_eq!(service(&host, "probe", "ping")["outcome"], "allowed");
}

#[test]
fn invalid_registrations_fail_the_build() {
    use airlock_abi::contract::{Operation, Service};
    struct Kv;
    impl Service for Kv {
        const NAME: &'static str = "kv";
    }
    struct Get;
    impl Operation for Get {
        type Service = Kv;
        const NAME: &'static str = "get";
        const VERSION: u32 = 1;
        type Input = String;
        type Output = String;
    }
    let err = Host::builder()
        .operation::<Get>(|_, key| Ok(key))
        .build()
        .expect_err("a built-in service's name");
    assert!(err.to_string().contains("built-in"), "{err}");

    let err = airlock_tests::probe_services(Host::builder())
        .operation::<airlock_contract_probe::Ping>(airlock_tests::probe_ping)
        .build()
        .expect_err("registered twice");
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn a_handler_sees_who_called_it_the_host_for_a_principal_or_another_plugin() {
    let dir = TempPluginDir::with(&["probe", "probe-bare"]);
    let (host, report) =
        dir.load("[plugins.probe]\ngrants = [\"plugins.call:*\", \"service:probe.*\"]\n");
    assert!(report.all_ok(), "{report:#?}");
    let whoami = |outcome: Result<airlock::Reply, airlock::CallError>| match outcome.expect("call")
    {
        airlock::Reply::Ok(v) => v,
        other => panic!("{other:?}"),
    };
    // The host program, on behalf of no one.
    assert_eq!(
        whoami(host.call("probe", "whoami").json(&Value::Null)),
        json!({"host": {"principal": null}})
    );
    // The host program on behalf of a principal it names.
    let ada = airlock::Principal::new("ada", &["admin"]);
    assert_eq!(
        whoami(
            host.call("probe", "whoami")
                .as_principal(&ada)
                .json(&Value::Null)
        ),
        json!({"host": {"principal": {"id": "ada", "roles": ["admin"]}}})
    );
    // Another plugin: the bare probe, called by the probe (itself called on behalf of ada),
    // sees the probe and its generation.
    assert_eq!(
        whoami(
            host.call("probe", "whoami_of")
                .as_principal(&ada)
                .json(&json!("probe-bare"))
        ),
        json!({"plugin": {"id": "probe", "generation": 1}})
    );
    // Outside any call (a plain host call again), the host.
    assert_eq!(
        whoami(host.call("probe-bare", "whoami").json(&Value::Null)),
        json!({"host": {"principal": null}})
    );
}

#[test]
fn a_service_handler_sees_the_plugin_and_on_whose_behalf_it_calls() {
    use airlock_contract_probe::Ping;
    let dir = TempPluginDir::with(&["probe"]);
    let host = Host::builder()
        .plugin_dir(dir.path())
        .policy(
            airlock::Policy::parse(GRANTED, airlock::policy::PolicyFormat::Toml).expect("policy"),
        )
        .operation::<Ping>(|caller, _| {
            Ok(serde_json::to_string(&json!({
                "plugin": caller.plugin,
                "generation": caller.generation,
                "on_behalf_of": caller.on_behalf_of,
            }))
            .unwrap_or_default())
        })
        .build()
        .expect("host");
    assert!(host.load().expect("load").all_ok());
    let ada = airlock::Principal::new("ada", &[]);
    let answer = match host
        .call("probe", "service")
        .as_principal(&ada)
        .json(&json!("ping"))
    {
        Ok(airlock::Reply::Ok(v)) => v,
        other => panic!("{other:?}"),
    };
    let seen: Value = serde_json::from_str(answer["answer"].as_str().unwrap_or_default())
        .expect("the handler's answer");
    assert_eq!(
        seen,
        json!({"plugin": "probe", "generation": 1,
               "on_behalf_of": {"host": {"principal": {"id": "ada", "roles": []}}}})
    );
}

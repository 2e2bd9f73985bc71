//! The policy the README shows is one the host reads, with what it says it sets.

use std::time::Duration;

use airlock::policy::Permission;
use airlock::Policy;
use airlock_abi::manifest::PluginId;

#[test]
fn the_readme_policy_parses_and_means_what_it_says() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## The operator's policy")
        .nth(1)
        .expect("the README has a policy section");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("with a TOML block");
    // The README elides a hash and a secret's value: put any well-formed value in their place.
    let toml = toml.replace("\"…\"", &format!("\"{}\"", "0".repeat(64)));
    let policy = Policy::parse(&toml, airlock::policy::PolicyFormat::Toml)
        .expect("the README's policy parses");
    let hello = policy.for_plugin(&PluginId::new("hello").expect("id"));
    let decisions: Vec<_> = hello.permissions.iter().map(|r| r.decision).collect();
    assert_eq!(
        decisions,
        [Permission::Allow, Permission::Allow, Permission::Ask]
    );
    let by_attribute = &hello.permissions[1];
    assert_eq!(by_attribute.callers[0].to_string(), "attr:org=acme");
    assert_eq!(by_attribute.inputs[0].pointer, "/name");
    assert_eq!(by_attribute.inputs[0].globs, ["A*", "B*"]);
    assert_eq!(hello.retry.retries, 3);
    assert_eq!(hello.retry.max_backoff, Duration::from_secs(5));
    assert_eq!(hello.isolation, airlock::policy::Isolation::InProcess);
    assert_eq!(hello.restart.budget, 3);
    assert!(policy.host().worker.is_some());
    assert!(!policy.host().dumpable);
    assert_eq!(policy.host().pending_ttl, Some(Duration::from_secs(86400)));
    assert!(policy.trust().contains_key("acme"));
    assert!(!hello.signature.required());
    let routine = &policy.routines()[0];
    assert_eq!(
        (routine.plugin.as_str(), routine.action.as_str()),
        ("hello", "greet")
    );
    assert!(routine.matches("users.signed-up", &serde_json::json!({"plan": "pro"})));
    assert!(!routine.matches("users.signed-up", &serde_json::json!({"plan": "free"})));
}

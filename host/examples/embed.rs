//! Embedding Airlock in a host program: build a host over a plugin directory, load what passes
//! (printing every refusal with its reason code), call an action, shut down.
//!
//! Run it after `./scripts/demo.sh` has built the example plugins:
//! `cargo run -p airlock --example embed -- target/demo-plugins`

use std::path::PathBuf;
use std::process::ExitCode;

use airlock::{Host, Policy, Reply};

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/demo-plugins"), PathBuf::from);
    let policy = Policy::parse(
        "[plugins.hello.config]\ngreeting = \"Greetings\"\n",
        airlock::policy::PolicyFormat::Toml,
    )
    .expect("the example policy is valid");
    let host = match Host::builder().plugin_dir(&dir).policy(policy).build() {
        Ok(host) => host,
        Err(e) => {
            eprintln!("cannot create the host: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match host.load() {
        Ok(report) => report,
        Err(e) => {
            eprintln!("cannot load {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    for refused in report.refused() {
        let reason = refused.reason.map_or("?", |r| r.code());
        eprintln!(
            "refused {} ({reason}): {}",
            refused.file.display(),
            refused.detail
        );
    }
    for plugin in host.plugins() {
        println!(
            "loaded {} {} in {:?}",
            plugin.id, plugin.version, plugin.load_time
        );
    }
    match host
        .call("hello", "greet")
        .json(&serde_json::json!({ "name": "embedder" }))
    {
        Ok(Reply::Ok(value)) => println!("hello answered {value}"),
        Ok(Reply::Error(message)) => println!("hello refused: {message}"),
        Ok(Reply::PendingApproval(id)) => println!("the call waits for approval {id}"),
        Ok(Reply::Pending { id, description }) => {
            println!("hello answers later ({id}): {description}")
        }
        Err(e) => println!("the call failed ({}): {}", e.code, e.message),
    }
    for record in host.shutdown() {
        println!("{}: {:?}", record.id, record.outcome);
    }
    ExitCode::SUCCESS
}

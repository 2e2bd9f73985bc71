//! Public routes (`auth: {"public": ..}`): webhooks from senders that cannot carry the host's
//! bearer token are served without the program's authentication, only with a valid signature
//! made with the operator's secret — and only once. And a plugin's slow routes cannot take every
//! thread of a concurrent server from another plugin's routes.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock::http::HttpIn;
use airlock::Host;
use airlock_tests::TempPluginDir;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// The courier, behind a program whose authentication refuses every request.
fn courier(grants: &str) -> (TempPluginDir, tempfile::TempDir, Host) {
    let dir = TempPluginDir::with(&["courier"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[secrets]\ngithub_hook = {GITHUB_SECRET:?}\n\
         slack_hook = {SLACK_SECRET:?}\n[plugins.courier]\ngrants = [{grants}]\n",
        data.path()
    );
    let (host, report) = dir.load_with(&policy, |builder| {
        builder.http_auth(|_: &HttpIn| Err("no token, no entry".to_owned()))
    });
    assert!(report.all_ok(), "{report:#?}");
    (dir, data, host)
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpIn {
    HttpIn {
        method: "POST".to_owned(),
        path: path.to_owned(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.to_vec(),
    }
}

fn calls(host: &Host) -> u64 {
    host.plugin("courier").expect("loaded").stats.calls
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[test]
fn a_github_signed_webhook_is_served_once_without_the_programs_authentication() {
    let (_dir, _data, host) = courier(r#""kv", "secrets:github_hook""#);
    let body = br#"{"action":"opened","number":7}"#;
    let signature = format!("sha256={}", hmac_hex(GITHUB_SECRET, body));
    let delivery = |id: &'static str, body: &[u8], signature: &str| {
        let headers = [
            ("X-GitHub-Event", "pull_request"),
            ("X-GitHub-Delivery", id),
            ("X-Hub-Signature-256", signature),
            ("Content-Type", "application/json"),
        ];
        host.handle_http(&post("/plugins/courier/github", &headers, body))
    };
    let served = delivery("72d3162e-1", body, &signature);
    assert_eq!(served.status, 200, "{}", text(&served.body));
    let seen: Value = serde_json::from_slice(&served.body).expect("json");
    assert_eq!(seen["body"], text(body));
    assert_eq!(
        seen["caller"], "the host program on behalf of anonymous",
        "no principal: {seen}"
    );
    let before = calls(&host);
    // The body changed on the way: the signature no longer fits, and the plugin is not called.
    let tampered = delivery(
        "72d3162e-2",
        br#"{"action":"closed","number":7}"#,
        &signature,
    );
    assert_eq!(tampered.status, 401, "{}", text(&tampered.body));
    assert!(text(&tampered.body).contains("does not match"));
    let unsigned = delivery("72d3162e-3", body, "sha256=");
    assert_eq!(unsigned.status, 401);
    // The same delivery again, or the same signed body under a new delivery id: refused.
    let replayed = delivery("72d3162e-1", body, &signature);
    assert_eq!(replayed.status, 409, "{}", text(&replayed.body));
    assert!(text(&replayed.body).contains("replayed"));
    let renamed = delivery("72d3162e-4", body, &signature);
    assert_eq!(renamed.status, 409, "{}", text(&renamed.body));
    assert_eq!(
        calls(&host),
        before,
        "no refused request reached the plugin"
    );
    // Each refusal left an audit record for the operator: forged and replayed deliveries.
    let refused: Vec<_> = host
        .audit()
        .tail(50)
        .into_iter()
        .filter(|r| r.outcome == airlock::services::AuditOutcome::RouteRefused)
        .collect();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert!(refused
        .iter()
        .all(|r| r.plugin == "courier" && r.capability == "route:POST /github"));
    assert!(
        refused[0].detail.starts_with("401 "),
        "{}",
        refused[0].detail
    );
    assert!(
        refused[3].detail.starts_with("409 "),
        "{}",
        refused[3].detail
    );
    // A new delivery is served; a route that is not public still meets the program's hook.
    let other = br#"{"action":"opened","number":8}"#;
    let next = delivery(
        "72d3162e-5",
        other,
        &format!("sha256={}", hmac_hex(GITHUB_SECRET, other)),
    );
    assert_eq!(next.status, 200, "{}", text(&next.body));
    let private = host.handle_http(&post("/plugins/courier/webhook", &[], b"{}"));
    assert_eq!(private.status, 401);
    assert!(text(&private.body).contains("no token, no entry"));
}

#[test]
fn a_slack_request_is_served_only_with_a_recent_timestamp() {
    let (_dir, _data, host) = courier(r#""kv", "secrets:slack_hook""#);
    let body = b"token=x&team_id=T1&command=%2Fweather&text=94070";
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let signed_at = |at: u64| {
        let t = at.to_string();
        let mut message = format!("v0:{t}:").into_bytes();
        message.extend_from_slice(body);
        let signature = format!("v0={}", hmac_hex(SLACK_SECRET, &message));
        host.handle_http(&post(
            "/plugins/courier/slack",
            &[
                ("X-Slack-Request-Timestamp", &t),
                ("X-Slack-Signature", &signature),
            ],
            body,
        ))
    };
    let served = signed_at(now);
    assert_eq!(served.status, 200, "{}", text(&served.body));
    let seen: Value = serde_json::from_slice(&served.body).expect("json");
    assert_eq!(seen["body"], text(body));
    let before = calls(&host);
    // Signed correctly ten minutes ago: a replay, refused before the plugin runs.
    let stale = signed_at(now - 600);
    assert_eq!(stale.status, 401, "{}", text(&stale.body));
    assert!(text(&stale.body).contains("stale or replayed"));
    // The very request again, within the window: accepted once only.
    let again = signed_at(now);
    assert_eq!(again.status, 409, "{}", text(&again.body));
    assert_eq!(calls(&host), before);
}

#[test]
fn a_public_route_whose_secret_the_operator_did_not_grant_is_refused() {
    // The policy holds the secret's value, but does not grant `secrets:github_hook` to courier:
    // the plugin cannot make a route public with it.
    let (_dir, _data, host) = courier(r#""kv""#);
    let body = b"{}";
    let signature = format!("sha256={}", hmac_hex(GITHUB_SECRET, body));
    let before = calls(&host);
    let refused = host.handle_http(&post(
        "/plugins/courier/github",
        &[
            ("X-GitHub-Delivery", "d-1"),
            ("X-Hub-Signature-256", &signature),
        ],
        body,
    ));
    assert_eq!(refused.status, 403, "{}", text(&refused.body));
    assert!(
        text(&refused.body).contains("does not grant it secrets:github_hook"),
        "{}",
        text(&refused.body)
    );
    assert_eq!(calls(&host), before);
}

fn get(path: &str, query: &str) -> HttpIn {
    HttpIn {
        method: "GET".to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        ..HttpIn::default()
    }
}

#[test]
fn one_plugins_slow_routes_do_not_starve_another_plugins_routes() {
    let dir = TempPluginDir::with(&["courier", "long-call"]);
    let data = tempfile::tempdir().expect("tempdir");
    let trace = data.path().join("trace");
    let policy = format!(
        "[host]\ndata_dir = {:?}\n[plugins.courier]\ngrants = [\"kv\"]\n\
         [plugins.long-call.config]\ntrace = {trace:?}\n",
        data.path()
    );
    let (host, report) = dir.load_with(&policy, |b| b.max_route_concurrency(2));
    assert!(report.all_ok(), "{report:#?}");
    let calls = || host.plugin("long-call").expect("loaded").stats.calls;
    let before = calls();
    std::thread::scope(|scope| {
        let slow: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| host.handle_http(&get("/plugins/long-call/slow", "3000"))))
            .collect();
        // Once both slow requests are in the plugin (each took its place before it was
        // called), a third is answered at once, without waiting.
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls() < before + 2 {
            assert!(
                Instant::now() < deadline,
                "the slow requests never reached the plugin"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        let answer = host.handle_http(&get("/plugins/long-call/slow", "0"));
        let took = started.elapsed();
        assert_eq!(answer.status, 503, "{}", text(&answer.body));
        // Well under the 3 s the slow ones hold their places: it waited for neither.
        assert!(took < Duration::from_secs(2), "503 after {took:?}");
        let retry = answer.headers.iter().find(|(n, _)| n == "retry-after");
        assert_eq!(retry.map(|(_, v)| v.as_str()), Some("1"));
        assert!(text(&answer.body).contains("as many route requests as it may (2)"));
        // Another plugin's route answers meanwhile.
        let started = Instant::now();
        let fast = host.handle_http(&get("/plugins/courier/items/7", ""));
        assert_eq!(fast.status, 200, "{}", text(&fast.body));
        assert!(started.elapsed() < Duration::from_secs(2));
        for handle in slow {
            let answer = handle.join().expect("no panic");
            assert_eq!(answer.status, 200, "{}", text(&answer.body));
        }
    });
    // The places were given back.
    assert_eq!(
        host.handle_http(&get("/plugins/long-call/slow", "0"))
            .status,
        200
    );
}

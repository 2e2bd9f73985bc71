//! Outbound HTTP through the membrane against a real server on 127.0.0.1: an allowed call
//! (bytes both ways), a host no grant covers, a refused scheme, a refused private address, a
//! name the host pins to a private address, redirects re-checked hop by hop, the time, size and
//! redirect limits — each with its audit record, and never a header or a body in one.

use std::time::Duration;

use airlock::services::AuditOutcome;
use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// A real HTTP server on 127.0.0.1 (tiny_http), on its own thread: its port.
fn server() -> u16 {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a server");
    let port = server.server_addr().to_ip().expect("ip").port();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let url = request.url().to_owned();
            let redirect = |to: String| {
                tiny_http::Response::from_string("")
                    .with_status_code(302)
                    .with_header(
                        tiny_http::Header::from_bytes("Location", to.as_bytes()).expect("header"),
                    )
            };
            let answer = match url.as_str() {
                "/hello" => tiny_http::Response::from_string("hi").with_header(
                    tiny_http::Header::from_bytes("Content-Type", "text/plain").expect("header"),
                ),
                "/bytes" => tiny_http::Response::from_data(vec![0u8, 159, 146, 150, 255]),
                "/big" => tiny_http::Response::from_data(vec![b'x'; 4096]),
                "/echo" => {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let mut echoed = format!("{} ", request.method()).into_bytes();
                    echoed.extend_from_slice(&body);
                    tiny_http::Response::from_data(echoed)
                }
                "/slow" => {
                    std::thread::sleep(Duration::from_millis(1500));
                    tiny_http::Response::from_string("late")
                }
                "/to-hello" => redirect("/hello".to_owned()),
                "/to-ungranted" => redirect(format!("http://elsewhere.example:{port}/hello")),
                "/to-private" => redirect(format!("http://internal.test:{port}/hello")),
                "/loop" => redirect("/loop".to_owned()),
                "/auth" => {
                    let authorized = request.headers().iter().any(|h| {
                        h.field.equiv("Authorization") && h.value.as_str() == "Bearer s3cret"
                    });
                    tiny_http::Response::from_string(if authorized {
                        "authorized"
                    } else {
                        "anonymous"
                    })
                }
                "/to-api-auth" => redirect(format!("http://api.test:{port}/auth")),
                _ => tiny_http::Response::from_string("no such page").with_status_code(404),
            };
            let _ = request.respond(answer);
        }
    });
    port
}

const GRANTS: &str = "grants = [\"http.outbound:127.0.0.1\", \"http.outbound:*.test\"]";

fn load(http: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["probe"]);
    let policy = format!(
        "[host]\nresolve = {{ \"internal.test\" = [\"10.0.0.5\"], \"api.test\" = [\"127.0.0.1\"] }}\n\
         [plugins.probe]\n{GRANTS}\n[plugins.probe.http]\n{http}\n"
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

fn fetch(host: &Host, input: Value) -> Value {
    match host.call("probe", "http").json(&input) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("probe.http: {other:?}"),
    }
}

/// The audit records of outbound HTTP since the host started: outcome and detail.
fn http_records(host: &Host) -> Vec<(AuditOutcome, String, String)> {
    host.audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.capability.starts_with("http.outbound"))
        .map(|r| (r.outcome, r.capability, r.detail))
        .collect()
}

const LOCAL: &str = "allow_http = [\"127.0.0.1\", \"*.test\"]\nallow_private = [\"127.0.0.1/32\"]";

#[test]
fn an_allowed_call_carries_bytes_both_ways_and_is_audited_without_its_content() {
    let port = server();
    let (_dir, host) = load(LOCAL);
    let hello = fetch(
        &host,
        json!({"url": format!("http://127.0.0.1:{port}/hello")}),
    );
    assert_eq!(hello["status"], 200, "{hello}");
    assert_eq!(hello["body"], "hi");
    assert_eq!(hello["content_type"], "text/plain");
    let bytes = fetch(
        &host,
        json!({"url": format!("http://127.0.0.1:{port}/bytes")}),
    );
    assert_eq!(bytes["len"], 5, "{bytes}");
    let echo = fetch(
        &host,
        json!({"method": "POST", "url": format!("http://127.0.0.1:{port}/echo"),
               "headers": [["X-Secret-Header", "do-not-log"]], "body": "payload-not-logged"}),
    );
    assert_eq!(echo["body"], "POST payload-not-logged");
    // The client sets Host from the URL: a plugin naming another host there is refused.
    let fronted = fetch(
        &host,
        json!({"url": format!("http://127.0.0.1:{port}/hello"), "headers": [["Host", "admin.test"]]}),
    );
    assert!(
        fronted["error"]
            .as_str()
            .is_some_and(|m| m.contains("\"Host\" is set by the host")),
        "{fronted}"
    );
    let missing = fetch(
        &host,
        json!({"url": format!("http://127.0.0.1:{port}/nope")}),
    );
    assert_eq!(
        missing["status"], 404,
        "a status is an answer, not an error"
    );
    // A name the host pins to 127.0.0.1: the client connects to the address checked.
    let pinned = fetch(
        &host,
        json!({"url": format!("http://api.test:{port}/hello")}),
    );
    assert_eq!(pinned["body"], "hi", "{pinned}");
    let records = http_records(&host);
    let details: Vec<&str> = records.iter().map(|(_, _, d)| d.as_str()).collect();
    assert_eq!(
        details,
        [
            "GET 127.0.0.1 -> 200, 2 bytes",
            "GET 127.0.0.1 -> 200, 5 bytes",
            "POST 127.0.0.1 -> 200, 23 bytes",
            "GET 127.0.0.1 -> 404, 12 bytes",
            "GET api.test -> 200, 2 bytes",
        ]
    );
    assert!(records.iter().all(|(o, _, _)| *o == AuditOutcome::Http));
    let all = format!("{:?}", host.audit().tail(usize::MAX));
    assert!(!all.contains("do-not-log") && !all.contains("payload-not-logged"));
}

#[test]
fn hosts_schemes_and_addresses_the_policy_refuses_are_refused_each_with_one_record() {
    let port = server();
    // No grant covers the host.
    let (_dir, host) = load(LOCAL);
    let ungranted = fetch(
        &host,
        json!({"url": format!("http://elsewhere.example:{port}/")}),
    );
    assert_eq!(
        ungranted["denied"], "http.outbound:elsewhere.example",
        "{ungranted}"
    );
    // Plain http where the policy does not allow it.
    let (_dir, strict) = load("allow_private = [\"127.0.0.1/32\"]");
    let scheme = fetch(
        &strict,
        json!({"url": format!("http://127.0.0.1:{port}/hello")}),
    );
    assert!(
        scheme["refused"]
            .as_str()
            .is_some_and(|m| m.contains("scheme \"http\"")),
        "{scheme}"
    );
    // A loopback address the policy does not allow, by address and by a name resolving to it.
    let (_dir, public) = load("allow_http = [\"127.0.0.1\", \"*.test\"]");
    let loopback = fetch(
        &public,
        json!({"url": format!("http://127.0.0.1:{port}/hello")}),
    );
    assert!(
        loopback["refused"]
            .as_str()
            .is_some_and(|m| m.contains("a loopback address")),
        "{loopback}"
    );
    let private = fetch(
        &public,
        json!({"url": format!("http://internal.test:{port}/")}),
    );
    assert!(
        private["refused"]
            .as_str()
            .is_some_and(|m| m.contains("resolves to 10.0.0.5, a private address")),
        "{private}"
    );
    let denied: Vec<_> = http_records(&host)
        .into_iter()
        .filter(|(o, _, _)| *o == AuditOutcome::Denied)
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    for (host, refusals) in [(&strict, 1), (&public, 2)] {
        let records = http_records(host);
        assert_eq!(records.len(), refusals, "{records:?}");
        assert!(records
            .iter()
            .all(|(o, _, _)| *o == AuditOutcome::HttpRefused));
    }
}

#[test]
fn redirects_are_checked_hop_by_hop_and_the_limits_hold() {
    let port = server();
    let (_dir, host) = load(&format!(
        "{LOCAL}\ntimeout_ms = 400\nmax_body_bytes = 1024\nmax_redirects = 2"
    ));
    let url = |path: &str| json!({"url": format!("http://127.0.0.1:{port}{path}")});
    let followed = fetch(&host, url("/to-hello"));
    assert_eq!(
        (followed["status"].clone(), followed["body"].clone()),
        (json!(200), json!("hi"))
    );
    let ungranted = fetch(&host, url("/to-ungranted"));
    assert_eq!(
        ungranted["denied"], "http.outbound:elsewhere.example",
        "{ungranted}"
    );
    let private = fetch(&host, url("/to-private"));
    assert!(
        private["refused"]
            .as_str()
            .is_some_and(|m| m.contains("10.0.0.5")),
        "{private}"
    );
    let looping = fetch(&host, url("/loop"));
    assert!(
        looping["refused"]
            .as_str()
            .is_some_and(|m| m.contains("more than 2 redirects")),
        "{looping}"
    );
    let big = fetch(&host, url("/big"));
    assert!(
        big["unreachable"]
            .as_str()
            .is_some_and(|m| m.contains("over the limit of 1024 bytes")),
        "{big}"
    );
    let slow = fetch(&host, url("/slow"));
    assert!(slow["unreachable"].is_string(), "{slow}");
    let outcomes: Vec<AuditOutcome> = http_records(&host).into_iter().map(|(o, _, _)| o).collect();
    use AuditOutcome::{Denied, Http, HttpRefused};
    assert_eq!(
        outcomes,
        [
            Http,
            Http, // the redirect, then the page
            Http,
            Denied, // the redirect, then the ungranted host
            Http,
            HttpRefused, // the redirect, then the private address
            Http,
            Http,
            Http,
            HttpRefused, // two redirects followed, the third refused
            Http,        // the body over its limit
            Http,        // the time out
        ]
    );
}

#[test]
fn a_credential_is_used_for_the_plugin_never_read_by_it_and_never_sent_elsewhere() {
    let port = server();
    let dir = TempPluginDir::with(&["probe"]);
    let policy = format!(
        "[host]\nresolve = {{ \"api.test\" = [\"127.0.0.1\"] }}\n\
         [secrets]\napi_token = {{ value = \"Bearer s3cret\", header = \"Authorization\", \
         hosts = [\"127.0.0.1:{port}\"], allow_http = true }}\n\
         [plugins.probe]\ngrants = [\"http.outbound:127.0.0.1\", \"http.outbound:*.test\", \
         \"secrets:api_token\"]\n[plugins.probe.http]\n{LOCAL}\n"
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    let auth = |path: &str, credential: Option<&str>| {
        fetch(
            &host,
            json!({"url": format!("http://127.0.0.1:{port}{path}"), "credential": credential}),
        )
    };
    // Attached by the host: the server sees it.
    assert_eq!(auth("/auth", Some("api_token"))["body"], "authorized");
    assert_eq!(auth("/auth", None)["body"], "anonymous");
    // Not on a redirect to a host it is not for.
    assert_eq!(auth("/to-api-auth", Some("api_token"))["body"], "anonymous");
    // Not to a host it is not for, asked directly.
    let elsewhere = fetch(
        &host,
        json!({"url": format!("http://api.test:{port}/auth"), "credential": "api_token"}),
    );
    assert!(
        elsewhere["refused"]
            .as_str()
            .is_some_and(|m| m.contains("credential \"api_token\" may not be sent")),
        "{elsewhere}"
    );
    // Reading it is a denial, with its record.
    let read = host
        .call("probe", "secret")
        .json(&json!("api_token"))
        .expect("called");
    assert_eq!(
        read,
        Reply::Ok(json!({"outcome": "capability_violation", "capability": "secrets:api_token"}))
    );
    let records = format!("{:?}", host.audit().tail(usize::MAX));
    assert!(records.contains("is a credential: usable in outbound HTTP requests, never readable"));
    assert!(
        !records.contains("s3cret"),
        "the credential reached the audit log"
    );
    // Without the grant, it cannot even be used.
    let (ungranted, report) = dir.load(&policy.replace(", \"secrets:api_token\"", ""));
    assert!(report.all_ok(), "{report:#?}");
    let used = fetch(
        &ungranted,
        json!({"url": format!("http://127.0.0.1:{port}/auth"), "credential": "api_token"}),
    );
    assert_eq!(used["denied"], "secrets:api_token", "{used}");
}

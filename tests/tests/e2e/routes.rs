//! Inbound HTTP for plugins: routes declared in `plugin.json`, dispatched by the library
//! (`host.handle_http`) after the program's authentication hook, and served by `airlock run
//! --listen` to a real HTTP client — `401`, `404`, `501`, `413`, and the route's own answer
//! with the request id the plugin saw.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use airlock::http::HttpIn;
use airlock::Host;
use airlock_abi::wire::Principal;
use airlock_tests::TempPluginDir;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

fn courier(builder: airlock::HostBuilder, dir: &TempPluginDir, data: &std::path::Path) -> Host {
    let policy = format!("[host]\ndata_dir = {data:?}\n[plugins.courier]\ngrants = [\"kv\"]\n");
    let host = builder
        .plugin_dir(dir.path())
        .policy(
            airlock::Policy::parse(&policy, airlock::policy::PolicyFormat::Toml).expect("policy"),
        )
        .max_request_body(256)
        .build()
        .expect("host");
    assert!(host.load().expect("load").all_ok());
    host
}

fn request(method: &str, path: &str, token: Option<&str>, body: &[u8]) -> HttpIn {
    let mut headers = vec![("X-Event".to_owned(), "push".to_owned())];
    if let Some(token) = token {
        headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
    }
    HttpIn {
        method: method.to_owned(),
        path: path.to_owned(),
        query: "source=test".to_owned(),
        headers,
        body: body.to_vec(),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_library_dispatches_routes_after_the_programs_authentication() {
    let dir = TempPluginDir::with(&["courier"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = courier(
        Host::builder().http_auth(|request: &HttpIn| {
            let bearer = header(&request.headers, "authorization");
            match bearer.and_then(|v| v.strip_prefix("Bearer ")) {
                Some("ada-token") => Ok(Some(Principal::new("ada", &["ops"]))),
                _ => Err("who are you?".to_owned()),
            }
        }),
        &dir,
        data.path(),
    );
    let event = br#"{"ref": "main"}"#;
    // The hook refuses before anything is looked up.
    let refused = host.handle_http(&request("POST", "/plugins/courier/webhook", None, event));
    assert_eq!(refused.status, 401);
    assert!(String::from_utf8_lossy(&refused.body).contains("who are you?"));
    let token = Some("ada-token");
    let kept = host.handle_http(&request("POST", "/plugins/courier/webhook", token, event));
    assert_eq!(kept.status, 202, "{}", String::from_utf8_lossy(&kept.body));
    let id = header(&kept.headers, "x-request-id")
        .expect("a request id")
        .to_owned();
    let answer: Value = serde_json::from_slice(&kept.body).expect("json");
    assert_eq!(
        answer,
        json!({"stored": format!("webhook/{id}"), "event": "push", "query": "source=test"})
    );
    // Another request, another id; the action ran on behalf of the principal.
    let status = host.handle_http(&request("GET", "/plugins/courier/status", token, b""));
    assert_eq!(status.status, 200);
    assert_ne!(header(&status.headers, "x-request-id"), Some(id.as_str()));
    let status: Value = serde_json::from_slice(&status.body).expect("json");
    assert_eq!(status["webhooks"], 1);
    assert_eq!(status["caller"], "the host program on behalf of ada");
    // Unknown plugin, unknown path, method not declared, declared but not handled, too big.
    for (method, path, expected) in [
        ("GET", "/plugins/nobody/status", 404),
        ("GET", "/plugins/courier/nothing", 404),
        ("PUT", "/plugins/courier/webhook", 404),
        ("GET", "/elsewhere", 404),
        ("DELETE", "/plugins/courier/webhook", 501),
    ] {
        let answer = host.handle_http(&request(method, path, token, b""));
        assert_eq!(answer.status, expected, "{method} {path}");
    }
    let big = host.handle_http(&request(
        "POST",
        "/plugins/courier/webhook",
        token,
        &[b' '; 300],
    ));
    assert_eq!(big.status, 413);
    // A body the route cannot read is the plugin's answer to give: its action fails.
    let bad = host.handle_http(&request(
        "POST",
        "/plugins/courier/webhook",
        token,
        b"not json",
    ));
    assert_eq!(bad.status, 500, "{}", String::from_utf8_lossy(&bad.body));
}

#[test]
fn a_route_sees_its_parameters_and_query_and_none_of_the_edges_credentials() {
    let dir = TempPluginDir::with(&["courier"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = courier(
        Host::builder().http_auth(|request: &HttpIn| {
            match header(&request.headers, "authorization") {
                Some("Bearer ada-token") => Ok(Some(Principal::new("ada", &["ops"]))),
                _ => Err("who are you?".to_owned()),
            }
        }),
        &dir,
        data.path(),
    );
    let get = |path: &str, query: &str| {
        let headers = [
            ("Authorization", "Bearer ada-token"),
            ("Proxy-Authorization", "Basic cHJveHk6cHc="),
            ("Cookie", "session=ada"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "this connection's only"),
            ("X-Request-Id", "chosen-by-the-client"),
            ("X-Event", "lookup"),
        ];
        host.handle_http(&HttpIn {
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: Vec::new(),
        })
    };
    let answer = get(
        "/plugins/courier/items/a%20b%C3%A9",
        "q=two+words&tag=x&q=again",
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let seen: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(seen["params"], json!([["id", "a b\u{e9}"]]));
    assert_eq!(seen["id"], "a b\u{e9}");
    assert_eq!(seen["path"], "/items/a%20b%C3%A9");
    assert_eq!(
        seen["query"],
        json!([["q", "two words"], ["tag", "x"], ["q", "again"]])
    );
    assert_eq!(seen["q"], "two words");
    assert_eq!(seen["caller"], "the host program on behalf of ada");
    // The hook saw the token; the plugin sees no credential, hop-by-hop header or client id.
    assert_eq!(seen["headers"], json!([["X-Event", "lookup"]]));
    // One x-request-id, the host's: not the client's, not the one the plugin set.
    let ids: Vec<&str> = answer
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(ids, [seen["request_id"].as_str().expect("an id")]);
    // An exact segment wins over {id}; the wildcard takes the rest of the path.
    let latest: Value =
        serde_json::from_slice(&get("/plugins/courier/items/latest", "").body).expect("json");
    assert_eq!(
        (latest["path"].as_str(), &latest["params"]),
        (Some("/items/latest"), &json!([]))
    );
    let file: Value =
        serde_json::from_slice(&get("/plugins/courier/files/docs/2024/q1.pdf", "").body)
            .expect("json");
    assert_eq!(file["params"], json!([["rest", "docs/2024/q1.pdf"]]));
    for (path, status) in [
        ("/plugins/courier/items/a%2Fb", 400),
        ("/plugins/courier/items/%00", 400),
        ("/plugins/courier/items/%FF", 400),
        ("/plugins/courier/files/docs/../../etc/passwd", 400),
        ("/plugins/courier/files/%2e%2e/etc", 400),
        ("/plugins/courier/files", 404),
        ("/plugins/courier/items/1/2", 404),
    ] {
        let answer = get(path, "");
        assert_eq!(
            answer.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[test]
fn airlock_run_listen_serves_the_routes_to_a_real_client() {
    let dir = TempPluginDir::with(&["courier"]);
    let data = tempfile::tempdir().expect("tempdir");
    let policy = data.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[host]\ndata_dir = \"kv\"\n[secrets]\ngithub_hook = \"gh-s3cret\"\n\
         [plugins.courier]\ngrants = [\"kv\", \"secrets:github_hook\"]\n",
    )
    .expect("policy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
        .args(["run", "--listen", "127.0.0.1:0", "--policy"])
        .arg(&policy)
        .arg(dir.path())
        .env("AIRLOCK_LISTEN_TOKEN", "s3cret")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let base = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).expect("a line") > 0,
            "no address printed"
        );
        if let Some(rest) = line.trim().strip_prefix("serving the plugins' routes on ") {
            break rest.trim_end_matches("/plugins/<id>/...").to_owned();
        }
    };
    let agent = ureq::AgentBuilder::new().build();
    let url = format!("{base}/plugins/courier/webhook?via=cli");
    match agent.post(&url).send_string("{\"n\": 1}") {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401 without the token: {other:?}"),
    }
    let response = agent
        .post(&url)
        .set("Authorization", "Bearer s3cret")
        .set("X-Event", "ping")
        .send_string("{\"n\": 1}")
        .expect("served");
    assert_eq!(response.status(), 202);
    let id = response.header("x-request-id").expect("an id").to_owned();
    let body: Value = serde_json::from_str(&response.into_string().expect("text")).expect("json");
    assert_eq!(body["stored"], format!("webhook/{id}"));
    assert_eq!(body["query"], "via=cli");
    match agent
        .delete(&url)
        .set("Authorization", "Bearer s3cret")
        .call()
    {
        Err(ureq::Error::Status(501, _)) => {}
        other => panic!("expected 501: {other:?}"),
    }
    let too_big = vec![b' '; airlock::http::DEFAULT_MAX_REQUEST_BODY + 1];
    match agent
        .post(&url)
        .set("Authorization", "Bearer s3cret")
        .send_bytes(&too_big)
    {
        Err(ureq::Error::Status(413, _)) => {}
        other => panic!("expected 413: {other:?}"),
    }
    match agent
        .get(&format!("{base}/plugins/courier/nope"))
        .set("Authorization", "Bearer s3cret")
        .call()
    {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("expected 404: {other:?}"),
    }
    // GitHub carries no bearer token: its signature opens the public route instead.
    let event = br#"{"zen":"Approachable is better than simple."}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"gh-s3cret").expect("any key");
    mac.update(event);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let github = agent
        .post(&format!("{base}/plugins/courier/github"))
        .set("X-GitHub-Delivery", "d-listen-1")
        .set("X-Hub-Signature-256", &format!("sha256={hex}"))
        .send_bytes(event)
        .expect("a signed webhook is served without the token");
    let seen: Value = serde_json::from_str(&github.into_string().expect("text")).expect("json");
    assert_eq!(seen["body"], String::from_utf8_lossy(event).as_ref());
    match agent
        .post(&format!("{base}/plugins/courier/github"))
        .set("X-GitHub-Delivery", "d-listen-2")
        .set("X-Hub-Signature-256", &format!("sha256={hex}"))
        .send_bytes(b"{}")
    {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("expected 401 for a body its signature does not fit: {other:?}"),
    }
    drop(child.stdin.take());
    let status = child.wait().expect("exits");
    assert!(status.success(), "{status}");
}

/// Captures what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_plugins_log_fields_reach_a_json_subscriber_as_json_fields() {
    let dir = TempPluginDir::with(&["courier"]);
    let data = tempfile::tempdir().expect("tempdir");
    let host = courier(Host::builder(), &dir, data.path());
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let answer = tracing::subscriber::with_default(subscriber, || {
        host.handle_http(&request("POST", "/plugins/courier/webhook", None, b"{}"))
    });
    assert_eq!(answer.status, 202);
    let id = header(&answer.headers, "x-request-id").expect("id");
    let out = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let line: Value = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
        .find(|l| l["fields"]["message"] == "webhook received")
        .unwrap_or_else(|| panic!("no log line: {out}"));
    assert_eq!(
        line["fields"],
        json!({"message": "webhook received", "request_id": id, "event": "push", "bytes": 2})
    );
    assert_eq!(line["target"], "airlock::plugin");
}

#[test]
fn a_route_past_its_call_timeout_answers_504() {
    let dir = TempPluginDir::with(&["long-call"]);
    let trace = dir.path().join("trace");
    let (host, report) = dir.load(&format!(
        "[plugins.long-call]\ncall_timeout_ms = 100\n[plugins.long-call.config]\ntrace = {trace:?}\n"
    ));
    assert!(report.all_ok(), "{report:#?}");
    let fast = HttpIn {
        method: "GET".to_owned(),
        path: "/plugins/long-call/slow".to_owned(),
        query: "0".to_owned(),
        ..HttpIn::default()
    };
    assert_eq!(host.handle_http(&fast).status, 200);
    let slow = HttpIn {
        query: "400".to_owned(),
        ..fast
    };
    let answer = host.handle_http(&slow);
    assert_eq!(
        answer.status,
        504,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

#[test]
fn without_a_token_only_a_loopback_address_is_served() {
    let dir = TempPluginDir::with(&["courier"]);
    let out = airlock_tests::run_with_input(
        {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
            cmd.args(["run", "--listen", "0.0.0.0:0"])
                .arg(dir.path())
                .env_remove("AIRLOCK_LISTEN_TOKEN");
            cmd
        },
        "/quit\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("set AIRLOCK_LISTEN_TOKEN"), "{stderr}");
}

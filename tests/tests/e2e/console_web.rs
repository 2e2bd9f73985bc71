//! `airlock run --console` over real HTTP, each request a real client of the real binary: the
//! token it always needs and the session cookie it is exchanged for, the page's security
//! headers, changes refused from other origins, hostile requests, every action audited as the
//! web console's, a bad config refused without a change, and the event stream following the
//! audit log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

const TOKEN: &str = "console-test-token";

/// `airlock run --console 127.0.0.1:0` on hello, configured and probe-bare (whose `whoami`
/// waits for approval), killed when dropped.
struct Console {
    child: Child,
    stdin: ChildStdin,
    addr: SocketAddr,
    token: String,
    _dir: TempPluginDir,
}

/// An answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Console {
    fn start(token: Option<&str>) -> Self {
        let dir = TempPluginDir::with(&["hello", "configured", "probe-bare"]);
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            "[plugins.configured]\ngrants = [\"secrets:*\"]\n\
             [[plugins.probe-bare.permissions]]\nactions = [\"whoami\"]\ndecision = \"ask\"\n",
        )
        .expect("policy");
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
        command
            .args(["run", "--console", "127.0.0.1:0", "--policy"])
            .arg(&policy)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match token {
            Some(token) => command.env("AIRLOCK_CONSOLE_TOKEN", token),
            None => command.env_remove("AIRLOCK_CONSOLE_TOKEN"),
        };
        let mut child = command.spawn().expect("the host starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let url = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).expect("a line") > 0,
                "no console address printed"
            );
            if let Some(url) = line.trim().strip_prefix("console: http://") {
                break url.to_owned();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let (addr, token) = url
            .split_once("/?token=")
            .expect("the address has the token");
        Self {
            child,
            stdin,
            addr: addr.parse().expect("an address"),
            token: token.to_owned(),
            _dir: dir,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends one request on a connection of its own and reads the whole answer.
    fn raw(&self, head: &str, body: &[u8]) -> Answer {
        let mut stream = TcpStream::connect(self.addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let head = head.replace('\n', "\r\n");
        stream.write_all(head.as_bytes()).expect("head sent");
        let _ = stream.write_all(body);
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// A request with `extra` header lines (each ending in a newline).
    fn send(&self, method: &str, path: &str, extra: &str, body: &str) -> Answer {
        let head = format!(
            "{method} {path} HTTP/1.1\nHost: {}\nConnection: close\nContent-Length: {}\n{extra}\n",
            self.addr,
            body.len()
        );
        self.raw(&head, body.as_bytes())
    }

    fn bearer(&self) -> String {
        format!("Authorization: Bearer {}\n", self.token)
    }

    fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &self.bearer(), "")
    }

    /// A change as the console's own page makes it.
    fn post(&self, path: &str, body: &Value) -> Answer {
        let extra = format!(
            "{}Origin: {}\nContent-Type: application/json\n",
            self.bearer(),
            self.origin()
        );
        self.send("POST", path, &extra, &body.to_string())
    }

    fn plugin(&self, id: &str) -> Value {
        let answer = self.get(&format!("/api/plugins/{id}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }

    fn audit(&self) -> Vec<Value> {
        let records = self.get("/api/audit?limit=500").json()["records"].clone();
        records.as_array().cloned().expect("records")
    }

    /// A line for the line console on standard input.
    fn line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the line console reads");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to a minute for `ready`.
fn wait_for<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_console_answers_nothing_without_its_token() {
    let console = Console::start(Some(TOKEN));
    for path in ["/", "/app.js", "/style.css", "/api/plugins", "/api/events"] {
        for extra in [
            "",
            "Authorization: Bearer wrong-token\n",
            "Authorization: Bearer console-test-toke\n",
            "Authorization: Basic console-test-token\n",
            "Cookie: airlock_console=console-test-token\n",
            "Cookie: airlock_console=0000\n",
        ] {
            let answer = console.send("GET", path, extra, "");
            assert_eq!(answer.status, 401, "{path} with {extra:?}: {}", answer.body);
            assert!(!answer.body.contains("hello"), "{}", answer.body);
        }
    }
    // A page of another name resolved to this address (DNS rebinding) is refused even with
    // the token.
    let port = console.addr.port();
    for host in [format!("evil.example:{port}"), "127.0.0.1:1".to_owned()] {
        let head = format!(
            "GET /api/plugins HTTP/1.1\nHost: {host}\nConnection: close\n{}\n",
            console.bearer()
        );
        let answer = console.raw(&head, b"");
        assert_eq!(answer.status, 403, "Host {host}: {}", answer.body);
        assert!(!answer.body.contains("hello"), "{}", answer.body);
    }
    let named = format!(
        "GET /api/plugins HTTP/1.1\nHost: localhost:{port}\nConnection: close\n{}\n",
        console.bearer()
    );
    assert_eq!(console.raw(&named, b"").status, 200);
    let wrong = console.send("GET", "/?token=wrong", "", "");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let right = console.get("/api/plugins");
    assert_eq!(right.status, 200);
    let listed = right.json()["plugins"].to_string();
    for id in ["hello", "configured", "probe-bare"] {
        assert!(listed.contains(&format!("\"id\":\"{id}\"")), "{listed}");
    }
}

#[test]
fn the_token_in_the_address_is_exchanged_for_a_session_cookie() {
    // No token set: one is generated, printed, and needed all the same (loopback too).
    let console = Console::start(None);
    assert!(
        console.token.len() == 64 && console.token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        console.token
    );
    assert_eq!(console.send("GET", "/", "", "").status, 401);
    let exchanged = console.send("GET", &format!("/?token={}", console.token), "", "");
    assert_eq!(exchanged.status, 303);
    assert_eq!(exchanged.header("location"), Some("/"));
    let cookie = exchanged.header("set-cookie").expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let session = cookie.split(';').next().expect("name=value");
    assert!(session.starts_with("airlock_console="), "{session}");
    assert!(
        !session.contains(&console.token),
        "the session is not the token"
    );
    let page = console.send("GET", "/", &format!("Cookie: theme=dark; {session}\n"), "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("src=\"/app.js\""), "{}", page.body);
    assert!(!page.body.contains("<script>"), "no inline script");
    let csp = page.header("content-security-policy").expect("a CSP");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let script = console.send("GET", "/app.js", &format!("Cookie: {session}\n"), "");
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
}

#[test]
fn a_change_from_another_origin_is_refused() {
    let console = Console::start(Some(TOKEN));
    let json = "Content-Type: application/json\n";
    let bearer = console.bearer();
    let ours = format!("Origin: {}\n", console.origin());
    for (extra, status) in [
        (format!("{bearer}{json}"), 403),
        (format!("{bearer}{json}Origin: http://evil.example\n"), 403),
        (format!("{bearer}{json}Origin: null\n"), 403),
        (
            format!("{bearer}{json}{ours}Sec-Fetch-Site: cross-site\n"),
            403,
        ),
        (format!("{bearer}{json}Sec-Fetch-Site: same-site\n"), 403),
        (format!("{bearer}Content-Type: text/plain\n{ours}"), 415),
        (
            format!("{bearer}Content-Type: application/x-www-form-urlencoded\n{ours}"),
            415,
        ),
        (format!("{json}{ours}"), 401),
    ] {
        let answer = console.send("POST", "/api/plugins/hello/disable", &extra, "{}");
        assert_eq!(answer.status, status, "{extra:?}: {}", answer.body);
    }
    assert_eq!(
        console.plugin("hello")["state"],
        "running",
        "nothing changed"
    );
    let same_origin = format!("{bearer}{json}Sec-Fetch-Site: same-origin\n");
    let answer = console.send("POST", "/api/plugins/hello/disable", &same_origin, "{}");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(console.plugin("hello")["state"], "disabled");
}

#[test]
fn hostile_requests_get_clear_refusals() {
    let console = Console::start(Some(TOKEN));
    let extra = format!(
        "{}Origin: {}\nContent-Type: application/json\n",
        console.bearer(),
        console.origin()
    );
    // A body declared far over the limit is refused before it is read.
    let head = format!(
        "POST /api/plugins/configured/config HTTP/1.1\nHost: {}\nConnection: close\n\
         Content-Length: 1000000000\n{extra}\n",
        console.addr
    );
    assert_eq!(console.raw(&head, b"{").status, 413);
    // One sent over the limit without declaring it, chunked, is cut off.
    let head = format!(
        "POST /api/plugins/configured/config HTTP/1.1\nHost: {}\nConnection: close\n\
         Transfer-Encoding: chunked\n{extra}\n",
        console.addr
    );
    let chunk = format!("100000\r\n{}\r\n", "x".repeat(0x10_0000));
    assert_eq!(console.raw(&head, chunk.repeat(2).as_bytes()).status, 413);
    for body in ["{", "not json", "{\"config\": }", "\u{0}\u{1}"] {
        let answer = console.send("POST", "/api/plugins/configured/config", &extra, body);
        assert_eq!(answer.status, 400, "{body:?}");
        assert!(answer.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("not JSON")));
    }
    let no_config = console.post("/api/plugins/configured/config", &json!({"conf": {}}));
    assert_eq!(no_config.status, 400);
    for path in ["/api/plugins/nope", "/api/plugins/nope/series"] {
        let answer = console.get(path);
        assert_eq!(answer.status, 404, "{path}");
        assert!(answer.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")));
    }
    for verb in ["disable", "enable", "reload"] {
        let answer = console.post(&format!("/api/plugins/nope/{verb}"), &json!({}));
        assert_eq!(answer.status, 404, "{verb}: {}", answer.body);
    }
    let approval = console.post("/api/approvals/999/approve", &json!({}));
    assert_eq!(approval.status, 409, "{}", approval.body);
    assert_eq!(
        console.post("/api/approvals/x/approve", &json!({})).status,
        400
    );
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/app.js/../../Cargo.toml",
        "/assets/app.js",
        "/web/assets/index.html",
        "/..%2fCargo.toml",
        "/api/../app.js/..",
    ] {
        let answer = console.get(path);
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert!(!answer.body.contains("root:") && !answer.body.contains("[package]"));
    }
    assert_eq!(
        console.send("PUT", "/api/plugins", &extra, "{}").status,
        405
    );
    assert_eq!(
        console.plugin("configured")["generation"],
        1,
        "nothing changed"
    );
}

#[test]
fn every_action_is_audited_as_the_web_console_and_the_approved_call_answers() {
    let mut console = Console::start(Some(TOKEN));
    for (path, body, said) in [
        ("/api/plugins/hello/disable", json!({}), "disabled"),
        ("/api/plugins/hello/enable", json!({}), "enabled"),
        ("/api/plugins/hello/reload", json!({}), "hello"),
        (
            "/api/plugins/configured/revoke",
            json!({"capability": "secrets:*"}),
            "revoked secrets:*",
        ),
        (
            "/api/plugins/configured/config",
            json!({"config": {"retries": 4}}),
            "applied",
        ),
    ] {
        let answer = console.post(path, &body);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let message = answer.json()["message"].as_str().map(str::to_owned);
        assert!(
            message.as_deref().is_some_and(|m| m.contains(said)),
            "{path}: {message:?}"
        );
    }
    assert_eq!(
        console.plugin("configured")["config"],
        json!({"retries": 4})
    );
    assert_eq!(console.plugin("configured")["grants"], json!([]));
    assert_eq!(
        console.plugin("hello")["generation"],
        3,
        "enabled, then reloaded"
    );
    // A call the policy says to ask about, from the line console, approved on the page.
    console.line("/call probe-bare whoami");
    let id = wait_for("the call to wait for approval", || {
        let approvals = console.get("/api/approvals").json()["approvals"].clone();
        approvals[0]["id"].as_u64()
    });
    let approved = console.post(&format!("/api/approvals/{id}/approve"), &json!({}));
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert!(
        approved.json()["answer"].is_object(),
        "the call's answer: {}",
        approved.body
    );
    console.line("/call probe-bare whoami");
    let id = wait_for("a second call to wait", || {
        console.get("/api/approvals").json()["approvals"][0]["id"].as_u64()
    });
    let refused = console.post(&format!("/api/approvals/{id}/refuse"), &json!({}));
    assert_eq!(refused.json()["message"], "refused");
    let records = console.audit();
    let web = json!({"host": {"principal": {"id": "web-console", "roles": ["operator"]}}});
    for outcome in ["disabled", "enabled", "loaded", "revoked", "config_changed"] {
        let record = records
            .iter()
            .find(|r| r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} record in {records:?}"));
        assert_eq!(record["caller"], web, "{record}");
        assert_eq!(record["schema"], 10);
    }
    let decided: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "approved" || r["outcome"] == "approval_refused")
        .collect();
    assert_eq!(decided.len(), 2, "{records:?}");
    for record in decided {
        let detail = record["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("by web-console"), "{record}");
    }
    // The line console's own action names the host program alone.
    console.line("/disable hello");
    let line = wait_for("the line console's record", || {
        let records = console.audit();
        records
            .into_iter()
            .find(|r| r["outcome"] == "disabled" && r["caller"] != web)
    });
    assert_eq!(line["caller"], json!({"host": {"principal": null}}));
}

#[test]
fn a_bad_config_is_refused_with_its_message_and_changes_nothing() {
    let console = Console::start(Some(TOKEN));
    let before = console.plugin("configured");
    for (config, message) in [
        (json!({"retries": -1}), ">=0"),
        (json!({"token": "nope"}), "does not match pattern"),
        (
            json!({"token": "tok-1-revoked"}),
            "token tok-1-revoked is revoked",
        ),
        (json!({"unknown": 1}), "unknown"),
    ] {
        for path in [
            "/api/plugins/configured/config/check",
            "/api/plugins/configured/config",
        ] {
            let answer = console.post(path, &json!({ "config": config }));
            assert_eq!(answer.status, 422, "{path} {config}: {}", answer.body);
            let shown = answer.json();
            assert_eq!(shown["ok"], false);
            assert!(
                shown["errors"].to_string().contains(message),
                "{config}: {shown}"
            );
        }
    }
    let after = console.plugin("configured");
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(after["config"], before["config"]);
    assert!(!console
        .audit()
        .iter()
        .any(|r| r["outcome"] == "config_changed"));
    let good = console.post(
        "/api/plugins/configured/config/check",
        &json!({"config": {"retries": 9}}),
    );
    assert_eq!(good.status, 200, "{}", good.body);
    assert!(
        good.json()["warnings"].to_string().contains("is many"),
        "{}",
        good.body
    );
    assert_eq!(
        console.plugin("configured")["generation"],
        before["generation"],
        "a check applies nothing"
    );
}

#[test]
fn the_event_stream_delivers_audit_records_as_they_are_written() {
    let console = Console::start(Some(TOKEN));
    let mut stream = TcpStream::connect(console.addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let head = format!(
        "GET /api/events HTTP/1.1\r\nHost: {}\r\n{}\r\n",
        console.addr,
        console.bearer().replace('\n', "\r\n")
    );
    stream.write_all(head.as_bytes()).expect("sent");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status");
    assert!(line.contains(" 200 "), "{line}");
    let mut seen = String::new();
    // Until the head is over and the stream has started.
    while !seen.contains("text/event-stream") || !seen.ends_with("\r\n\r\n") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("head") > 0, "{seen}");
        seen.push_str(&line);
    }
    let answer = console.post("/api/plugins/hello/disable", &json!({}));
    assert_eq!(answer.status, 200);
    let record = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).expect("an event") > 0,
            "the stream ended"
        );
        if let Some(data) = line.trim().strip_prefix("data: ") {
            let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if value["outcome"] == "disabled" {
                break value;
            }
        }
    };
    assert_eq!(record["plugin"], "hello");
    // The streams one console holds at once are bounded: this one and 15 more are served,
    // the next is refused at once (each one's status read before the next is opened).
    let open = |expected: u16| {
        let mut stream = TcpStream::connect(console.addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        stream.write_all(head.as_bytes()).expect("sent");
        let mut status = String::new();
        BufReader::new(stream.try_clone().expect("clone"))
            .read_line(&mut status)
            .expect("a status line");
        assert!(status.contains(&format!(" {expected} ")), "{status}");
        stream
    };
    let held: Vec<TcpStream> = (0..15).map(|_| open(200)).collect();
    drop(open(503));
    drop(held);
    // Closed streams give their places back.
    wait_for("a place for a stream again", || {
        let mut stream = TcpStream::connect(console.addr).expect("connects");
        stream.write_all(head.as_bytes()).expect("sent");
        let mut status = String::new();
        BufReader::new(stream).read_line(&mut status).ok()?;
        status.contains(" 200 ").then_some(())
    });
}

#[test]
fn the_series_count_each_second_of_calls() {
    let mut console = Console::start(Some(TOKEN));
    // Once a second has been sampled, the calls fall in the seconds after it.
    wait_for("a first second sampled", || {
        let series = console.get("/api/plugins/hello/series").json();
        series["points"]
            .as_array()
            .filter(|p| !p.is_empty())
            .map(|_| ())
    });
    for _ in 0..5 {
        console.line("/call hello greet {\"name\":\"Ada\"}");
    }
    let series = wait_for("the sampler to count the calls", || {
        let series = console.get("/api/plugins/hello/series").json();
        let points = series["points"].as_array()?.clone();
        let calls: u64 = points.iter().filter_map(|p| p["calls"].as_u64()).sum();
        (calls == 5).then_some(points)
    });
    assert!(series
        .iter()
        .all(|p| p["t"].as_u64().is_some_and(|t| t > 0)));
    assert!(series.iter().all(|p| p["faults"] == 0));
    let other = console.get("/api/plugins/configured/series").json();
    let calls: u64 = other["points"]
        .as_array()
        .map_or(0, |p| p.iter().filter_map(|p| p["calls"].as_u64()).sum());
    assert_eq!(calls, 0, "each plugin's own");
}

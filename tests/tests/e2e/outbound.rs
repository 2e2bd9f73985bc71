//! What a plugin cannot steer in its outbound HTTP, against real servers on 127.0.0.1: a method
//! that would write a second request is refused before anything is sent (in-process and from a
//! worker); a credential goes only to the scheme, host and port it is for, not to another port
//! of the same host after a redirect; the addresses the host program serves on are never
//! reached; and a plugin's log lines stay one line each in the operator's log.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use airlock::services::AuditOutcome;
use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// A real HTTP server on 127.0.0.1 (std sockets, one request per connection): `/auth` says
/// whether the request carried `Authorization: Bearer s3cret`, `/to/<port>` redirects to
/// `/auth` on that port. Its address, and how many connections it accepted.
fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a server");
    let at = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut lines = Vec::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                lines.push(line);
            }
            let path = lines
                .first()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("/")
                .to_owned();
            let authorized = lines
                .iter()
                .any(|l| l.eq_ignore_ascii_case("authorization: Bearer s3cret\r\n"));
            let response = match path.strip_prefix("/to/") {
                Some(port) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/auth\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                None => {
                    let body = if authorized {
                        "authorized"
                    } else {
                        "anonymous"
                    };
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                }
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (at, accepted)
}

const LOCAL: &str = "allow_http = [\"127.0.0.1\"]\nallow_private = [\"127.0.0.1/32\"]";

fn load(extra: &str, secrets: &str) -> (TempPluginDir, Host) {
    let dir = TempPluginDir::with(&["hostile"]);
    let policy = format!(
        "[secrets]\n{secrets}\n[plugins.hostile]\n{extra}\n\
         grants = [\"http.outbound:127.0.0.1\", \"secrets:api_token\"]\n\
         [plugins.hostile.http]\n{LOCAL}\n"
    );
    let (host, report) = dir.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    (dir, host)
}

fn raw(host: &Host, input: Value) -> Value {
    match host.call("hostile", "http_raw").json(&input) {
        Ok(Reply::Ok(v)) => v,
        other => panic!("hostile.http_raw: {other:?}"),
    }
}

#[test]
fn a_method_that_smuggles_a_second_request_is_refused_and_nothing_is_sent() {
    for isolation in ["", "isolation = \"process\"\nsandbox = false"] {
        let (at, accepted) = server();
        let (_dir, host) = load(isolation, "");
        let url = format!("http://{at}/auth");
        let smuggled = raw(
            &host,
            json!({"method": "GET /x HTTP/1.1\r\nHost: admin.internal\r\n\r\nGET", "url": url}),
        );
        let error = smuggled["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("bad request: the HTTP method") && error.contains("is not a token"),
            "{isolation:?}: {smuggled}"
        );
        for method in ["GET /x", "GET\n", "", "G(E)T"] {
            let refused = raw(&host, json!({"method": method, "url": url}));
            assert!(refused["error"].is_string(), "{method:?}: {refused}");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            0,
            "the server saw a request"
        );
        // The same request with a method that is a token is made: the server was there.
        let plain = raw(&host, json!({"method": "GET", "url": url}));
        assert_eq!(plain["body"], "anonymous", "{plain}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}

const CREDENTIAL: &str =
    "api_token = { value = \"Bearer s3cret\", header = \"Authorization\", hosts = [\"127.0.0.1:PORT\"], allow_http = true }";

#[test]
fn a_credential_is_not_sent_to_another_port_of_its_host_after_a_redirect() {
    let ((granted, _), (other, _)) = (server(), server());
    let secrets = CREDENTIAL.replace("PORT", &granted.port().to_string());
    let (_dir, host) = load("", &secrets);
    let auth = |at: SocketAddr, path: &str| {
        raw(
            &host,
            json!({"method": "GET", "url": format!("http://{at}{path}"), "credential": "api_token"}),
        )
    };
    assert_eq!(auth(granted, "/auth")["body"], "authorized");
    // Redirected to the same host on another port: the hop is made, without the credential.
    let redirected = auth(granted, &format!("/to/{}", other.port()));
    assert_eq!(redirected["body"], "anonymous", "{redirected}");
    // Asked for that port directly: refused loudly, with its record.
    let direct = auth(other, "/auth");
    let error = direct["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "credential \"api_token\" may not be sent to http://127.0.0.1:{}",
            other.port()
        )),
        "{direct}"
    );
    // Without allow_http, the credential is for https only: plain http is refused.
    let strict = secrets.replace(", allow_http = true", "");
    let (_dir, strict) = load("", &strict);
    let plain = raw(
        &strict,
        json!({"method": "GET", "url": format!("http://{granted}/auth"), "credential": "api_token"}),
    );
    assert!(
        plain["error"]
            .as_str()
            .is_some_and(|e| e.contains("may not be sent to http://")),
        "{plain}"
    );
    let records = format!("{:?}", host.audit().tail(usize::MAX));
    assert!(
        !records.contains("s3cret"),
        "the credential reached the audit log"
    );
}

#[test]
fn the_addresses_the_host_serves_on_are_refused_even_where_loopback_is_allowed() {
    let ((serving, accepted), (elsewhere, _)) = (server(), server());
    let (_dir, host) = load("", "");
    let get = |at: SocketAddr| {
        raw(
            &host,
            json!({"method": "GET", "url": format!("http://{at}/auth")}),
        )
    };
    assert_eq!(
        get(serving)["body"],
        "anonymous",
        "reachable before it is registered"
    );
    host.serving_on(serving);
    let refused = get(serving);
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("is where the host program serves")),
        "{refused}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the refused hop was not made"
    );
    assert_eq!(get(elsewhere)["body"], "anonymous", "another port passes");
    // A wildcard listener stands for every local address on its port.
    let (wild, _) = server();
    host.serving_on(SocketAddr::new([0, 0, 0, 0].into(), wild.port()));
    assert!(get(wild)["error"].is_string());
    let refusals = host
        .audit()
        .tail(usize::MAX)
        .into_iter()
        .filter(|r| r.outcome == AuditOutcome::HttpRefused && r.detail.contains("host program"))
        .count();
    assert_eq!(refusals, 2);
}

/// Captures what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_plugins_log_line_is_one_line_in_the_operators_log() {
    for isolation in ["", "isolation = \"process\"\nsandbox = false"] {
        let (_dir, host) = load(isolation, "");
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let said = tracing::subscriber::with_default(subscriber, || {
            host.call("hostile", "say").json(&json!(
                "a\nFORGED line\r\n\u{1b}[2K WARN airlock::audit: forged"
            ))
        });
        assert!(matches!(said, Ok(Reply::Ok(_))), "{said:?}");
        let out = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = out.lines().filter(|l| l.contains("FORGED")).collect();
        // Two log lines (a plain one and one with a field), each one line.
        assert_eq!(lines.len(), 2, "{isolation:?}: {out}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("airlock::plugin") && l.contains("a\\nFORGED")),
            "{out}"
        );
        assert!(!out.contains('\u{1b}'), "{out}");
    }
}

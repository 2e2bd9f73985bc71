//! `airlock run --listen` under hostile clients, each a real TCP peer of the real binary: slow
//! heads and bodies that used to hold every route, a huge head, a huge declared body, idle
//! connections by the thousand, lenient framing, requests from other sites when there is no
//! token, and tokens the listener cannot use.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::TempPluginDir;

/// `airlock run --listen 127.0.0.1:0` on the courier and long-call plugins, killed when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
    _dir: TempPluginDir,
}

impl Served {
    fn start(token: Option<&str>, flags: &[&str]) -> Self {
        let dir = TempPluginDir::with(&["courier", "long-call"]);
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            "[host]\ndata_dir = \"kv\"\n[plugins.courier]\ngrants = [\"kv\"]\n",
        )
        .expect("policy");
        let mut command = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
        command
            .args(["run", "--listen", "127.0.0.1:0", "--policy"])
            .arg(&policy)
            .args(flags)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match token {
            Some(token) => command.env("AIRLOCK_LISTEN_TOKEN", token),
            None => command.env_remove("AIRLOCK_LISTEN_TOKEN"),
        };
        let mut child = command.spawn().expect("the host starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let addr = airlock_tests::listen_addr(&mut stderr);
        // The rest of standard error is read away, so the host never blocks writing it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream
    }

    /// Sends `head` (and nothing after it) on a connection of its own; the answer's status.
    fn status_of(&self, head: &str) -> Option<u16> {
        let mut stream = self.connect();
        stream.write_all(head.as_bytes()).expect("sent");
        status_line(&mut stream)
    }

    /// A value from `/proc/<pid>/status` (`VmRSS` in kB, `Threads`).
    fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the host's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {status}"))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of the answer on `stream`, if one came before it closed.
fn status_line(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn slow_and_stalled_clients_hold_no_other_request_up() {
    let served = Served::start(None, &[]);
    let host = format!("Host: {}\r\n", served.addr);
    // Each stops partway and stays silent: a head that never ends, a declared body that never
    // comes (also behind `Expect: 100-continue`), a chunked body that never comes, an upgrade.
    let stalls = [
        format!("POST /plugins/courier/webhook HTTP/1.1\r\n{host}Content-Length: 5000\r\n"),
        format!("POST /plugins/courier/webhook HTTP/1.1\r\n{host}Content-Length: 5000\r\n\r\n"),
        format!(
            "POST /plugins/courier/webhook HTTP/1.1\r\n{host}Content-Length: 5000\r\n\
             Expect: 100-continue\r\n\r\n"
        ),
        format!(
            "POST /plugins/courier/webhook HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"
        ),
        format!(
            "GET /plugins/courier/status HTTP/1.1\r\n{host}Connection: Upgrade\r\nUpgrade: x\r\n"
        ),
    ];
    let _held: Vec<TcpStream> = stalls
        .iter()
        .map(|stall| {
            let mut stream = served.connect();
            stream.write_all(stall.as_bytes()).expect("sent");
            stream
        })
        .collect();
    // One of the routes is slow, too: another plugin's route must not wait for it.
    let slow = served.url("/plugins/long-call/slow?1500");
    let slow = std::thread::spawn(move || match ureq::get(&slow).call() {
        Ok(response) | Err(ureq::Error::Status(_, response)) => Some(response.status()),
        Err(ureq::Error::Transport(_)) => None,
    });
    std::thread::sleep(Duration::from_millis(200));
    let agent = ureq::AgentBuilder::new().build();
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let started = Instant::now();
        let response = agent
            .get(&served.url("/plugins/courier/status"))
            .call()
            .expect("answered");
        assert_eq!(response.status(), 200);
        worst = worst.max(started.elapsed());
    }
    eprintln!("50 requests beside 5 stalled clients and a slow route: the slowest took {worst:?}");
    // Before, the first stalled client held every route for a minute and more.
    assert!(worst < Duration::from_secs(2), "{worst:?}");
    let slow = slow.join().expect("joined");
    assert!(slow.is_some(), "the slow route was answered too: {slow:?}");
}

#[test]
fn a_huge_head_is_refused_with_431_and_costs_no_memory() {
    let served = Served::start(Some("s3cret"), &[]);
    let before = served.proc_status("VmRSS");
    let mut stream = served.connect();
    stream
        .write_all(b"GET /plugins/courier/status HTTP/1.1\r\nX-Big: ")
        .expect("sent");
    let block = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    // Up to 400 MiB, until the host stops taking it.
    while sent < 400 << 20 {
        if stream.write_all(&block).is_err() {
            break;
        }
        sent += block.len();
    }
    let after = served.proc_status("VmRSS");
    eprintln!(
        "a head of {} MiB sent before the host closed: resident {before} kB -> {after} kB",
        sent >> 20
    );
    assert!(
        sent < 64 << 20,
        "the host read {} MiB of one head",
        sent >> 20
    );
    assert!(after < before + 10 * 1024, "{before} kB -> {after} kB");
    // A head just over the limit gets its answer.
    let mut stream = served.connect();
    let head = format!(
        "GET /plugins/courier/status HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    stream.write_all(head.as_bytes()).expect("sent");
    assert_eq!(status_line(&mut stream), Some(431));
}

#[test]
fn a_declared_body_over_the_limit_is_refused_before_it_is_read() {
    let served = Served::start(Some("s3cret"), &[]);
    let started = Instant::now();
    let status = served.status_of(
        "POST /plugins/courier/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
         Content-Length: 4000000000\r\n\r\n",
    );
    assert_eq!(status, Some(413));
    assert!(started.elapsed() < Duration::from_secs(10));
    // And before the token is looked at, nothing else is: no token, 401, body unread.
    let status = served.status_of(
        "POST /plugins/courier/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
    );
    assert_eq!(status, Some(401));
    // A client that sends a body just over the limit without waiting reads its answer, not a
    // reset connection.
    let mut stream = served.connect();
    let over = airlock::http::DEFAULT_MAX_REQUEST_BODY + 1;
    let head = format!(
        "POST /plugins/courier/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\
         Content-Length: {over}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("sent");
    stream
        .write_all(&vec![b' '; over])
        .expect("the body is read away");
    assert_eq!(status_line(&mut stream), Some(413));
}

#[test]
fn framing_is_strict() {
    let served = Served::start(Some("s3cret"), &[]);
    let head =
        "POST /plugins/courier/webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n";
    for framing in [
        "Content-Length: 2\r\nContent-Length: 3\r\n",
        "Content-Length: +2\r\n",
        "Content-Length: -1\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
    ] {
        let status = served.status_of(&format!("{head}{framing}\r\n{{}}"));
        assert!(
            status.is_none() || status == Some(400),
            "{framing:?} answered {status:?}"
        );
        assert_ne!(status, Some(202), "{framing:?} reached the route");
    }
    // The same request framed well reaches it.
    let status = served.status_of(&format!("{head}Content-Length: 2\r\n\r\n{{}}"));
    assert_eq!(status, Some(202));
}

#[test]
fn idle_connections_are_capped_and_closed() {
    let served = Served::start(
        Some("s3cret"),
        &["--max-connections", "32", "--idle-timeout-ms", "1000"],
    );
    let threads = served.proc_status("Threads");
    let idle: Vec<TcpStream> = (0..1500)
        .map(|_| TcpStream::connect(served.addr).expect("connects"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = served.proc_status("Threads");
    eprintln!("1500 idle connections: the host's threads {threads} -> {during}");
    assert!(during <= threads + 4, "{threads} -> {during}");
    // Every one is closed: at once over the cap, after a second of silence under it.
    std::thread::sleep(Duration::from_millis(2500));
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert!(
            matches!(stream.read(&mut byte), Ok(0) | Err(_)),
            "an idle connection was left open"
        );
    }
    let response = ureq::get(&served.url("/plugins/courier/status"))
        .set("Authorization", "Bearer s3cret")
        .call()
        .expect("served after");
    assert_eq!(response.status(), 200);
}

#[test]
fn without_a_token_requests_from_other_sites_are_refused() {
    let served = Served::start(None, &[]);
    let ours = format!("Host: {}\r\n", served.addr);
    let post = "POST /plugins/courier/webhook HTTP/1.1\r\n";
    let body = "Content-Length: 2\r\n\r\n{}";
    for (what, headers) in [
        ("a rebinding name", "Host: evil.example\r\n".to_owned()),
        (
            "a web page elsewhere",
            format!("{ours}Origin: https://evil.example\r\n"),
        ),
        (
            "a browser's word",
            format!("{ours}Sec-Fetch-Site: cross-site\r\n"),
        ),
    ] {
        let status = served.status_of(&format!("{post}{headers}{body}"));
        assert_eq!(status, Some(403), "{what}");
    }
    let status = served.status_of(&format!(
        "{post}{ours}Origin: http://{}\r\n{body}",
        served.addr
    ));
    assert_eq!(status, Some(202), "the listener's own page");
}

#[test]
fn a_token_the_listener_cannot_use_stops_the_start() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempPluginDir::with(&["courier"]);
    for (token, says) in [
        (std::ffi::OsStr::from_bytes(b"s3\xffcret"), "not UTF-8"),
        (std::ffi::OsStr::new(""), "is empty"),
        (std::ffi::OsStr::new("two words"), "visible ASCII"),
    ] {
        let out = airlock_tests::run_with_input(
            {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock-cli"));
                cmd.args(["run", "--listen", "0.0.0.0:0"])
                    .arg(dir.path())
                    .env("AIRLOCK_LISTEN_TOKEN", token);
                cmd
            },
            "/quit\n",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{says}: {stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
        assert!(!stderr.contains("serving the plugins' routes"), "{stderr}");
    }
}

//! The metrics after a scripted workload, as an operator's scraper reads them: `airlock run
//! --listen` driven through its console and scraped at `GET /metrics` over HTTP, and a host in
//! this process read with `Host::metrics`; each parsed by the Prometheus project's own Python
//! parser (`prometheus_client.parser`), never by this project's code.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_tests::TempPluginDir;
use serde_json::{json, Value};

/// One scrape, as the real parser read it.
struct Scrape {
    /// Family name (the parser's, `_total` stripped) → type.
    families: BTreeMap<String, String>,
    /// Sample name, labels, value.
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses `text` with `prometheus_client.parser.text_string_to_metric_families`.
    fn parse(text: &str) -> Self {
        let python = std::env::var("AIRLOCK_TEST_PYTHON").unwrap_or_else(|_| {
            panic!(
                "AIRLOCK_TEST_PYTHON is not set: run the tests with ./scripts/test.sh, which \
                 makes a Python with prometheus-client and sets it"
            )
        });
        assert!(
            std::path::Path::new(&python).exists(),
            "AIRLOCK_TEST_PYTHON={python} does not exist: run ./scripts/test.sh to make it"
        );
        let script = "import sys, json\n\
            from prometheus_client.parser import text_string_to_metric_families\n\
            fams, samples = {}, []\n\
            for f in text_string_to_metric_families(sys.stdin.read()):\n\
            \x20   fams[f.name] = f.type\n\
            \x20   samples += [[s.name, s.labels, s.value] for s in f.samples]\n\
            print(json.dumps({'families': fams, 'samples': samples}))\n";
        let mut child = Command::new(&python)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("written");
        let out = child.wait_with_output().expect("python ends");
        assert!(
            out.status.success(),
            "the parser refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Value = serde_json::from_slice(&out.stdout).expect("json");
        let families = parsed["families"]
            .as_object()
            .expect("families")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        let samples = parsed["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| {
                let labels = s[1]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect();
                (
                    s[0].as_str().unwrap_or("").to_owned(),
                    labels,
                    s[2].as_f64().expect("a number"),
                )
            })
            .collect();
        Self { families, samples }
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", self.samples))
    }
}

/// `airlock run --listen 127.0.0.1:0` with a console on standard input, killed when dropped.
struct Run {
    child: Child,
    console: ChildStdin,
    addr: SocketAddr,
    _dir: TempPluginDir,
}

impl Run {
    fn start(plugins: &[&str], policy: &str) -> Self {
        let dir = TempPluginDir::with(plugins);
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, policy).expect("policy");
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock-cli"))
            .args(["run", "--listen", "127.0.0.1:0", "--policy"])
            .arg(&path)
            .arg(dir.path())
            .env_remove("AIRLOCK_LISTEN_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the host starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let addr = airlock_tests::listen_addr(&mut stderr);
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let mut stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let console = child.stdin.take().expect("stdin");
        Self {
            child,
            console,
            addr,
            _dir: dir,
        }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.console, "{line}").expect("the console reads");
    }

    fn get(&self, path: &str) -> ureq::Response {
        match ureq::get(&format!("http://{}{path}", self.addr)).call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// Scrapes `/metrics` until `done` holds of the scrape (the console's commands run in
    /// order, so the last one's count says all ran), or panics at the deadline.
    fn scrape_until(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = self.get("/metrics");
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.header("content-type"),
                Some("text/plain; version=0.0.4; charset=utf-8")
            );
            let scrape = Scrape::parse(&response.into_string().expect("text"));
            if done(&scrape) {
                return scrape;
            }
            assert!(Instant::now() < deadline, "the workload did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const POLICY: &str = r#"
[host]
data_dir = "kv"
[plugins.kv-counter]
grants = ["kv"]
[plugins.courier]
grants = ["kv"]
[plugins.long-call.config]
trace = "/dev/null"
[[plugins.hello.permissions]]
actions = ["config"]
decision = "ask"
"#;

#[test]
fn a_scripted_workload_shows_in_the_scraped_metrics_as_the_parser_reads_them() {
    let mut run = Run::start(
        &[
            "counter",
            "hello",
            "kv-counter",
            "snoop",
            "crashy",
            "courier",
            "hostile",
            "long-call",
        ],
        POLICY,
    );
    // A route request over the listener, and a request for a route no plugin has.
    assert_eq!(run.get("/plugins/courier/status").status(), 200);
    assert_eq!(run.get("/plugins/courier/nowhere").status(), 404);
    for _ in 0..5 {
        run.say("/call counter increment");
    }
    run.say(r#"/call hello greet {"name": "Ada"}"#);
    run.say(r#"/call hello greet {"name": "Bo"}"#);
    run.say("/call hello fail");
    run.say("/call hello config"); // the policy asks: it waits for approval
    run.say("/call crashy boom"); // a panic: a fault
    run.say("/call snoop peek"); // kv, a secret and a publish, none granted
                                 // A host name with a quote, which a URL allows: a label value the format must escape.
    run.say(r#"/call hostile http_raw {"method": "GET", "url": "http://we\"ird.example/"}"#);
    for _ in 0..3 {
        run.say(r#"/call kv-counter increment {"by": 2}"#);
    }
    run.say("/call kv-counter get");
    run.say(r#"/call long-call chunks {"count": 3}"#); // a streamed call: three chunks
    run.say("/reload counter");
    run.say("/call counter increment"); // on the new generation
    let ok = |plugin: &'static str, action: &'static str| {
        [("plugin", plugin), ("action", action), ("outcome", "ok")]
    };
    let scrape = run
        .scrape_until(|s| s.value("airlock_calls_total", &ok("counter", "increment")) == Some(6.0));

    // Every family is declared with its type, as the parser names them.
    for (family, kind) in [
        ("airlock_calls", "counter"),
        ("airlock_call_duration_seconds", "histogram"),
        ("airlock_faults", "counter"),
        ("airlock_denials", "counter"),
        ("airlock_reloads", "counter"),
        ("airlock_worker_restarts", "counter"),
        ("airlock_serial_wait_seconds", "histogram"),
        ("airlock_stream_chunks", "counter"),
        ("airlock_http_requests", "counter"),
        ("airlock_kv_operations", "counter"),
        ("airlock_pending_approvals", "gauge"),
    ] {
        assert_eq!(
            scrape.families.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }

    // Calls by plugin, action and outcome; the counts of the reloaded plugin carried over.
    let calls = |plugin, action, outcome| {
        scrape.get(
            "airlock_calls_total",
            &[("plugin", plugin), ("action", action), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("counter", "increment", "ok"), 6.0);
    assert_eq!(
        calls("counter", "get", "ok"),
        0.0,
        "a declared action not called yet"
    );
    assert_eq!(calls("hello", "greet", "ok"), 2.0);
    assert_eq!(calls("hello", "fail", "error"), 1.0);
    assert_eq!(calls("hello", "config", "pending_approval"), 1.0);
    assert_eq!(calls("crashy", "boom", "panicked"), 1.0);
    assert_eq!(calls("crashy", "boom", "ok"), 0.0);
    assert_eq!(calls("kv-counter", "increment", "ok"), 3.0);
    assert_eq!(calls("kv-counter", "get", "ok"), 1.0);
    assert_eq!(calls("courier", "status", "ok"), 1.0, "the route's call");
    assert_eq!(calls("long-call", "chunks", "ok"), 1.0);

    assert_eq!(
        scrape.get("airlock_faults_total", &[("plugin", "crashy")]),
        1.0
    );
    assert_eq!(
        scrape.get("airlock_faults_total", &[("plugin", "counter")]),
        0.0
    );
    assert_eq!(
        scrape.get("airlock_pending_approvals", &[("plugin", "hello")]),
        1.0
    );

    // Denials by capability, a hostile host name among them, read back as it was.
    let denied = |capability| {
        scrape.get(
            "airlock_denials_total",
            &[("plugin", "snoop"), ("capability", capability)],
        )
    };
    assert_eq!(denied("kv"), 1.0);
    assert_eq!(denied("secrets:api_token"), 1.0);
    assert_eq!(
        scrape.get(
            "airlock_denials_total",
            &[
                ("plugin", "hostile"),
                ("capability", "http.outbound:we\"ird.example")
            ]
        ),
        1.0
    );

    // The reload, and nothing refused.
    let reloads = |plugin, outcome| {
        scrape.get(
            "airlock_reloads_total",
            &[("plugin", plugin), ("outcome", outcome)],
        )
    };
    assert_eq!(reloads("counter", "loaded"), 1.0);
    assert_eq!(reloads("counter", "refused"), 0.0);
    assert_eq!(reloads("hello", "loaded"), 0.0);

    // kv-counter reads its count when created and on every call; each increment writes it.
    let kv = |kind| {
        scrape.get(
            "airlock_kv_operations_total",
            &[("plugin", "kv-counter"), ("kind", kind)],
        )
    };
    assert_eq!(kv("read"), 5.0);
    assert_eq!(kv("write"), 3.0);

    assert_eq!(
        scrape.get("airlock_stream_chunks_total", &[("plugin", "long-call")]),
        3.0
    );
    assert_eq!(
        scrape.get("airlock_stream_chunks_total", &[("plugin", "counter")]),
        0.0
    );

    // The route request, by route and status; a request that reached no route is not counted.
    assert_eq!(
        scrape.get(
            "airlock_http_requests_total",
            &[
                ("plugin", "courier"),
                ("method", "GET"),
                ("route", "/status"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert!(!scrape.samples.iter().any(|(n, l, _)| {
        n == "airlock_http_requests_total" && l.get("route").is_some_and(|r| r.contains("nowhere"))
    }));

    // The durations: a sample of the calls, never more than them, each bucket row whole.
    let mut timed_in_all = 0.0;
    for (name, labels, timed) in &scrape.samples {
        if name != "airlock_call_duration_seconds_count" {
            continue;
        }
        let (plugin, action) = (&labels["plugin"], &labels["action"]);
        let ended: f64 = scrape
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == "airlock_calls_total" && &l["plugin"] == plugin && &l["action"] == action
            })
            .map(|(_, _, v)| v)
            .sum();
        assert!(
            *timed <= ended,
            "{plugin}.{action}: {timed} timed of {ended}"
        );
        let inf = scrape.get(
            "airlock_call_duration_seconds_bucket",
            &[("plugin", plugin), ("action", action), ("le", "+Inf")],
        );
        assert_eq!(inf, *timed, "{plugin}.{action}");
        timed_in_all += timed;
    }
    assert!(timed_in_all >= 1.0, "a thread times its first call");

    // A serial plugin has its gate's histogram (no call waited here).
    assert_eq!(
        scrape.get(
            "airlock_serial_wait_seconds_count",
            &[("plugin", "kv-counter")]
        ),
        0.0
    );
    assert!(
        scrape
            .value(
                "airlock_serial_wait_seconds_count",
                &[("plugin", "counter")]
            )
            .is_none(),
        "counter is parallel"
    );
}

#[test]
fn metrics_are_behind_the_listeners_guard_and_answer_get_only() {
    let run = Run::start(&["counter"], "");
    let refused = ureq::get(&format!("http://{}/metrics", run.addr))
        .set("Origin", "http://evil.example")
        .call();
    assert!(
        matches!(refused, Err(ureq::Error::Status(403, _))),
        "a request from another site is refused"
    );
    let posted = ureq::post(&format!("http://{}/metrics", run.addr)).call();
    assert!(matches!(posted, Err(ureq::Error::Status(405, _))));
}

#[test]
fn a_call_that_waits_at_a_serial_plugins_gate_is_measured() {
    let dir = TempPluginDir::with(&["prover"]);
    let (host, report) = dir.load("");
    assert!(report.refused().next().is_none(), "{report:#?}");
    let host = Arc::new(host);
    // Two calls at once: one holds the gate, the other waits. Which comes first is the
    // scheduler's choice, and the second may start after the first ended; until a wait shows,
    // try again (with a deadline).
    let deadline = Instant::now() + Duration::from_secs(60);
    let waits = loop {
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let host = host.clone();
                std::thread::spawn(move || host.call("prover", "hold").json(&json!(200)))
            })
            .collect();
        for h in holders {
            assert!(matches!(
                h.join().expect("joined"),
                Ok(airlock::Reply::Ok(_))
            ));
        }
        let scrape = Scrape::parse(&host.metrics().prometheus());
        let waits = scrape.get("airlock_serial_wait_seconds_count", &[("plugin", "prover")]);
        if waits >= 1.0 {
            break scrape;
        }
        assert!(Instant::now() < deadline, "no call ever waited at the gate");
    };
    let count = waits.get("airlock_serial_wait_seconds_count", &[("plugin", "prover")]);
    let inf = waits.get(
        "airlock_serial_wait_seconds_bucket",
        &[("plugin", "prover"), ("le", "+Inf")],
    );
    assert_eq!(inf, count);
    assert!(waits.get("airlock_serial_wait_seconds_sum", &[("plugin", "prover")]) > 0.0);
    // `Host::metrics` reads what the call path counted, exactly.
    let calls = host.metrics().calls("prover", "hold", "ok");
    assert_eq!(
        calls as f64,
        waits.get(
            "airlock_calls_total",
            &[("plugin", "prover"), ("action", "hold"), ("outcome", "ok")]
        )
    );
    assert!(calls >= 2 && calls % 2 == 0);
    let stats = host.plugin("prover").expect("info").stats;
    assert_eq!(stats.calls, calls);
    assert!(stats.timed_calls >= 1 && stats.timed_calls <= calls);
    assert!(stats.timed_nanos > 0);
}

//! Client certificates: a `[secrets]` entry of kind `client_certificate` that the host presents
//! in the TLS handshake of a plugin's request, against a real rustls server on 127.0.0.1 that
//! requires a certificate signed by a CA the test makes (rcgen). With the entry named, the
//! request is served; without it the handshake fails, saying why; a redirect to a server the
//! entry does not name gets no certificate; the plugin can never read the entry; and a key file
//! other users may read is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlock::{Host, Reply};
use airlock_tests::TempPluginDir;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all written as PEM files
/// in `dir`; the server's TLS settings, which require a client certificate from that CA.
fn certificates(dir: &Path) -> Arc<rustls::ServerConfig> {
    let ca_key = KeyPair::generate().expect("a key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Airlock test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("the CA");
    let issue = |names: Vec<String>, usage| {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(names).expect("params");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("signed");
        (cert, key)
    };
    let (server, server_key) = issue(
        vec!["127.0.0.1".to_owned()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = issue(
        vec!["airlock-client".to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("client.pem"), client.pem()).expect("write");
    let key = dir.join("client.key");
    std::fs::write(&key, client_key.serialize_pem()).expect("write");
    set_mode(&key, 0o600);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("a verifier that requires a client certificate");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .expect("the server's certificate");
    Arc::new(config)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// What a server saw: connections, and handshakes in which a client certificate was presented.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    certified: AtomicUsize,
}

/// A TLS server on 127.0.0.1 requiring a client certificate: `/to/<port>` redirects to that
/// port, anything else answers `certified`.
fn server(config: Arc<rustls::ServerConfig>) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a server");
    let at = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            // The handshake happens on the first read; one a client fails ends here.
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            if !head.ends_with(b"\r\n\r\n") {
                continue;
            }
            if tls.conn.peer_certificates().is_some_and(|c| !c.is_empty()) {
                counts.certified.fetch_add(1, Ordering::SeqCst);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let response = match path.strip_prefix("/to/") {
                Some(port) => format!(
                    "HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1:{port}/\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
                None => "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\n\
                         certified"
                    .to_owned(),
            };
            let _ = tls.write_all(response.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (at, seen)
}

fn load(dir: &Path, named: SocketAddr) -> (TempPluginDir, Host) {
    let plugins = TempPluginDir::with(&["probe"]);
    let path = |name: &str| dir.join(name).display().to_string();
    let policy = format!(
        "[host]\ntls_roots = [{:?}]\n\
         [secrets]\nmtls = {{ kind = \"client_certificate\", cert = {:?}, key = {:?}, \
         hosts = [\"127.0.0.1:{}\"] }}\n\
         [plugins.probe]\ngrants = [\"http.outbound:127.0.0.1\", \"secrets:mtls\"]\n\
         [plugins.probe.http]\nallow_private = [\"127.0.0.1/32\"]\n",
        path("ca.pem"),
        path("client.pem"),
        path("client.key"),
        named.port()
    );
    let (host, report) = plugins.load(&policy);
    assert!(report.all_ok(), "{report:#?}");
    (plugins, host)
}

fn fetch(host: &Host, url: &str, credential: Option<&str>) -> Value {
    let mut input = json!({ "url": url });
    if let Some(name) = credential {
        input["credential"] = json!(name);
    }
    match host.call("probe", "http").json(&input) {
        Ok(Reply::Ok(answer)) => answer,
        other => panic!("probe.http: {other:?}"),
    }
}

#[test]
fn a_client_certificate_is_presented_to_the_hosts_it_names_and_never_read() {
    let work = tempfile::tempdir().expect("tempdir");
    let config = certificates(work.path());
    let ((named, at_named), (other, at_other)) = (server(config.clone()), server(config));
    let (_plugins, host) = load(work.path(), named);

    // Named in the request, for this host and port: presented, and the server answers.
    let served = fetch(&host, &format!("https://{named}/"), Some("mtls"));
    assert_eq!(served["status"], 200, "{served}");
    assert_eq!(served["body"], "certified", "{served}");
    assert_eq!(at_named.certified.load(Ordering::SeqCst), 1);

    // Not named: the handshake fails, and the error says what the server asked for.
    let anonymous = fetch(&host, &format!("https://{named}/"), None);
    let said = anonymous["unreachable"].as_str().unwrap_or_default();
    assert!(
        said.contains("CertificateRequired") && said.contains("client_certificate"),
        "{anonymous}"
    );
    assert_eq!(at_named.certified.load(Ordering::SeqCst), 1);

    // Redirected to a server the entry does not name: that hop goes without the certificate.
    let redirected = fetch(
        &host,
        &format!("https://{named}/to/{}", other.port()),
        Some("mtls"),
    );
    assert!(redirected["unreachable"].is_string(), "{redirected}");
    assert!(at_other.connections.load(Ordering::SeqCst) >= 1);
    assert_eq!(at_other.certified.load(Ordering::SeqCst), 0);

    // Asked for that server directly: refused before any connection.
    let before = at_other.connections.load(Ordering::SeqCst);
    let direct = fetch(&host, &format!("https://{other}/"), Some("mtls"));
    let said = direct["refused"].as_str().unwrap_or_default();
    assert!(
        said.contains(&format!(
            "client certificate \"mtls\" may not be presented to https://127.0.0.1:{}",
            other.port()
        )),
        "{direct}"
    );
    assert_eq!(at_other.connections.load(Ordering::SeqCst), before);

    // The plugin can never read it, though it is granted its name.
    let read = match host.call("probe", "secret").json(&json!("mtls")) {
        Ok(Reply::Ok(answer)) => answer,
        other => panic!("probe.secret: {other:?}"),
    };
    assert_eq!(read["outcome"], "capability_violation", "{read}");

    // Nothing of the files reached the answers or the audit log.
    let key = std::fs::read_to_string(work.path().join("client.key")).expect("the key");
    let key_line = key.lines().nth(1).expect("a line of the key");
    let records = format!("{:?}", host.audit().tail(usize::MAX));
    for text in [&records, &served.to_string(), &read.to_string()] {
        assert!(!text.contains(key_line), "the key leaked: {text}");
    }

    // A key file other users may read is refused, saying what to do.
    let certified = at_named.certified.load(Ordering::SeqCst);
    set_mode(&work.path().join("client.key"), 0o644);
    let shared = fetch(&host, &format!("https://{named}/"), Some("mtls"));
    let said = shared["refused"].as_str().unwrap_or_default();
    assert!(
        said.contains("may be read by other users") && said.contains("chmod 600"),
        "{shared}"
    );
    assert_eq!(at_named.certified.load(Ordering::SeqCst), certified);
}

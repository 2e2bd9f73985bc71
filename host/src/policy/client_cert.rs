//! Client certificates: `[secrets]` entries the host presents in the TLS handshake of a plugin's
//! outbound HTTPS request, to the hosts and ports the entry names, and never hands to a plugin
//! (`name = { kind = "client_certificate", cert = "client.pem", key = "client.key",
//! hosts = ["api.internal:8443"] }`). The files are read by the host when a request uses the
//! entry, so a renewed certificate is taken without a restart.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::credential::CredentialHost;

/// A client certificate the host presents for a plugin (one granted `secrets:<name>` that names
/// it in its request), over https only, to the hosts it names. Never readable by a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate chain, PEM (the client's certificate first).
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1); readable by its owner only.
    pub key: PathBuf,
    /// Where it is presented: a host glob and a port each (without a port, 443).
    pub hosts: Vec<CredentialHost>,
}

impl ClientCertificate {
    /// Whether it may be presented on a hop to `scheme://host:port`: over https, to a host and
    /// port it names.
    pub fn may_be_sent(&self, scheme: &str, host: &str, port: u16) -> bool {
        scheme == "https"
            && self.hosts.iter().any(|h| {
                h.port.unwrap_or(443) == port && airlock_abi::manifest::glob_match(&h.glob, host)
            })
    }
}

/// Reads a `[secrets]` entry of kind `client_certificate` (its other keys: `cert`, `key`,
/// `hosts`, all required).
pub(super) fn read_client_certificate(
    name: &str,
    table: &Map<String, Value>,
) -> Result<ClientCertificate, String> {
    const SHAPE: &str = "a client certificate is { kind = \"client_certificate\", cert = \
                         \"chain.pem\", key = \"key.pem\", hosts = [\"host[:port]\", ..] }";
    const KEYS: [&str; 4] = ["kind", "cert", "key", "hosts"];
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("[secrets] {name}: unknown key {key:?}; {SHAPE}"));
    }
    let path = |key: &str| match table.get(key) {
        Some(Value::String(path)) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!(
            "[secrets] {name}: {key} must be the path of a PEM file; {SHAPE}"
        )),
    };
    let hosts = super::credential::hosts_of(name, table.get("hosts"))
        .map_err(|e| format!("{e}; {SHAPE}"))?;
    Ok(ClientCertificate {
        cert: path("cert")?,
        key: path("key")?,
        hosts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_read_strictly_and_goes_to_its_hosts_over_https_only() {
        let table = |v: Value| v.as_object().cloned().expect("a table");
        let entry = read_client_certificate(
            "mtls",
            &table(serde_json::json!({
                "kind": "client_certificate", "cert": "c.pem", "key": "k.pem",
                "hosts": ["api.internal:8443", "*.corp.test"],
            })),
        )
        .expect("an entry");
        assert!(entry.may_be_sent("https", "api.internal", 8443));
        assert!(!entry.may_be_sent("https", "api.internal", 443));
        assert!(!entry.may_be_sent("http", "api.internal", 8443));
        assert!(entry.may_be_sent("https", "a.corp.test", 443));
        assert!(!entry.may_be_sent("https", "evil.test", 443));
        for (wrong, says) in [
            (
                serde_json::json!({"kind": "client_certificate", "cert": "c", "key": "k"}),
                "hosts",
            ),
            (
                serde_json::json!({"kind": "client_certificate", "cert": "c", "hosts": ["a"]}),
                "key",
            ),
            (
                serde_json::json!({"kind": "client_certificate", "cert": "c", "key": "k",
                    "hosts": ["a"], "value": "x"}),
                "unknown key \"value\"",
            ),
        ] {
            let err = read_client_certificate("mtls", &table(wrong)).expect_err("refused");
            assert!(
                err.contains("[secrets] mtls") && err.contains(says),
                "{err}"
            );
        }
    }
}

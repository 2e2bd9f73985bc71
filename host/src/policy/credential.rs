//! Credentials: secrets a plugin may use but never read. The host attaches one to a plugin's
//! outbound request as a header, and only where the operator said it may go: a host glob and a
//! port each, over https (plain http only where the entry allows it). Read from `[secrets]`
//! strictly: an entry that is not a readable secret nor a whole credential is an error.

use airlock_abi::manifest::glob_match;
use serde::Deserialize;

use super::SecretSource;

/// A secret the plugin may use but never read: the host attaches it to the plugin's outbound
/// HTTP requests as a header, only on the hops whose scheme, host and port it is for
/// (`[secrets] name = { value | env, header, hosts, allow_http }`). Its `Debug` never shows a
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Where its value comes from.
    pub source: SecretSource,
    /// The header it is sent as (`Authorization`).
    pub header: String,
    /// Where it may be sent.
    pub hosts: Vec<CredentialHost>,
    /// Whether it may be sent over plain http too (to the ports its entries name, and to 80
    /// for an entry without a port); otherwise over https only.
    pub allow_http: bool,
}

/// One place a credential may be sent: a host glob and a port (`api.example.com`,
/// `*.example.com:8443`, `[::1]:8080`); without a port, https's 443.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialHost {
    /// The host glob, lower-case (`*` matches any run of characters).
    pub glob: String,
    /// The port, if the entry names one.
    pub port: Option<u16>,
}

impl CredentialHost {
    /// Parses `host-glob[:port]` (an IPv6 address in brackets).
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let wrong = |why: &str| {
            format!("{text:?} is not a host glob with an optional port (as in api.example.com:8443): {why}")
        };
        let (glob, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (address, after) = rest.split_once(']').ok_or_else(|| wrong("no ]"))?;
                match after {
                    "" => (address, None),
                    _ => (
                        address,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| wrong("after ] comes :port"))?,
                        ),
                    ),
                }
            }
            None if text.matches(':').count() > 1 => {
                return Err(wrong("write an IPv6 address in brackets"))
            }
            None => match text.split_once(':') {
                Some((glob, port)) => (glob, Some(port)),
                None => (text, None),
            },
        };
        if glob.is_empty()
            || glob
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(wrong("the host is empty or holds a space or a /"));
        }
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| wrong("the port must be 1 to 65535"))
            })
            .transpose()?;
        Ok(Self {
            glob: glob.to_ascii_lowercase(),
            port,
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16, allow_http: bool) -> bool {
        let port_matches = match (scheme, self.port) {
            ("https", Some(p)) => p == port,
            ("https", None) => port == 443,
            ("http", Some(p)) => allow_http && p == port,
            ("http", None) => allow_http && port == 80,
            _ => false,
        };
        port_matches && glob_match(&self.glob, host)
    }
}

impl std::fmt::Display for CredentialHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.glob.contains(':'), self.port) {
            (true, Some(port)) => write!(f, "[{}]:{port}", self.glob),
            (false, Some(port)) => write!(f, "{}:{port}", self.glob),
            (_, None) => f.write_str(&self.glob),
        }
    }
}

impl Credential {
    /// Whether it may be sent on a hop to `scheme://host:port` (`host` lower-case, an IPv6
    /// address without brackets).
    pub fn may_be_sent(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.hosts
            .iter()
            .any(|h| h.matches(scheme, host, port, self.allow_http))
    }
}

/// A `[secrets]` entry as written: a string, or a table read key by key ([`read_secret`]), so
/// that a credential written wrong is an error rather than a plain secret the plugin can read.
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct RawSecret(serde_json::Value);

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawSecret(<redacted>)")
    }
}

/// What a secret is, read from its entry.
pub(super) enum Secret {
    Readable(SecretSource),
    Credential(Credential),
    ClientCertificate(super::ClientCertificate),
    /// `kind = "storage_key"`: a key the host seals plugins' kv values with; never readable.
    StorageKey(SecretSource),
}

/// A `[secrets]` entry of `kind = "storage_key"`: base64 of 32 bytes (checked now when written
/// in the policy, when used when read from the environment).
fn storage_key(
    name: &str,
    table: &serde_json::Map<String, serde_json::Value>,
    source: SecretSource,
) -> Result<Secret, String> {
    if ["header", "hosts", "allow_http"]
        .iter()
        .any(|k| table.contains_key(*k))
    {
        return Err(format!(
            "[secrets] {name}: a storage key (kind = \"storage_key\") takes only value or env \
             beside its kind"
        ));
    }
    if let SecretSource::Value(text) = &source {
        super::kv::key_bytes(text)
            .map_err(|why| format!("[secrets] {name}: the storage key {why}"))?;
    }
    Ok(Secret::StorageKey(source))
}

/// The `hosts` of the `[secrets]` entry `name` (a credential's or a client certificate's): a
/// non-empty list of `"host[:port]"`.
pub(super) fn hosts_of(
    name: &str,
    hosts: Option<&serde_json::Value>,
) -> Result<Vec<CredentialHost>, String> {
    match hosts {
        Some(serde_json::Value::Array(hosts)) if !hosts.is_empty() => hosts
            .iter()
            .map(|h| {
                h.as_str()
                    .ok_or_else(|| "an entry is not a string".to_owned())
                    .and_then(CredentialHost::parse)
                    .map_err(|e| format!("[secrets] {name}: hosts: {e}"))
            })
            .collect(),
        _ => Err(format!(
            "[secrets] {name}: hosts must be a non-empty list of \"host[:port]\""
        )),
    }
}

/// Reads one `[secrets]` entry: `"value"`, `{ value }` or `{ env }` (readable), or a credential
/// (`{ value | env, header, hosts, allow_http }`). Any other key, or a credential missing its
/// header or its hosts, is an error that says what the entry needs.
pub(super) fn read_secret(name: &str, raw: RawSecret) -> Result<Secret, String> {
    use serde_json::Value;
    const SHAPE: &str = "a secret is a string, { value = .. } or { env = .. }; a credential adds \
                         header = \"..\" and hosts = [\"host[:port]\", ..] (and allow_http = true \
                         to be sent over plain http)";
    let table = match raw.0 {
        Value::String(value) => return Ok(Secret::Readable(SecretSource::Value(value))),
        Value::Object(table) => table,
        _ => return Err(format!("[secrets] {name}: {SHAPE}")),
    };
    let storage = match table.get("kind") {
        None => false,
        Some(Value::String(kind)) if kind == "client_certificate" => {
            return super::client_cert::read_client_certificate(name, &table)
                .map(Secret::ClientCertificate)
        }
        Some(Value::String(kind)) if kind == "storage_key" => true,
        Some(other) => {
            return Err(format!(
                "[secrets] {name}: kind {other} is not one the host knows \
                 (\"client_certificate\", \"storage_key\")"
            ))
        }
    };
    const KEYS: [&str; 6] = ["value", "env", "header", "hosts", "allow_http", "kind"];
    if let Some(key) = table.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("[secrets] {name}: unknown key {key:?}; {SHAPE}"));
    }
    let text = |key: &str| match table.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("[secrets] {name}: {key} must be a string")),
    };
    let source = match (text("value")?, text("env")?) {
        (Some(value), None) => SecretSource::Value(value),
        (None, Some(env)) => SecretSource::Env(env),
        _ => {
            return Err(format!(
                "[secrets] {name}: takes exactly one of value or env"
            ))
        }
    };
    if storage {
        return storage_key(name, &table, source);
    }
    let header = text("header")?;
    let hosts = table.get("hosts");
    if header.is_none() && hosts.is_none() && !table.contains_key("allow_http") {
        return Ok(Secret::Readable(source));
    }
    let (Some(header), Some(hosts)) = (header, hosts) else {
        return Err(format!(
            "[secrets] {name}: a credential needs both header (the header it is sent as) and \
             hosts (where it may be sent: [\"host[:port]\", ..])"
        ));
    };
    let hosts = hosts_of(name, Some(hosts))?;
    let allow_http = match table.get("allow_http") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(format!(
                "[secrets] {name}: allow_http must be true or false"
            ))
        }
    };
    Ok(Secret::Credential(Credential {
        source,
        header,
        hosts,
        allow_http,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(hosts: &[&str], allow_http: bool) -> Credential {
        Credential {
            source: SecretSource::Value("v".to_owned()),
            header: "Authorization".to_owned(),
            hosts: hosts
                .iter()
                .map(|h| CredentialHost::parse(h).expect("entry"))
                .collect(),
            allow_http,
        }
    }

    #[test]
    fn a_credential_goes_to_its_scheme_host_and_port_only() {
        let strict = credential(&["api.example.com", "*.corp.test:8443"], false);
        assert!(strict.may_be_sent("https", "api.example.com", 443));
        assert!(
            !strict.may_be_sent("https", "api.example.com", 8443),
            "another port"
        );
        assert!(
            !strict.may_be_sent("http", "api.example.com", 80),
            "plain http"
        );
        assert!(!strict.may_be_sent("http", "api.example.com", 443));
        assert!(strict.may_be_sent("https", "a.corp.test", 8443));
        assert!(!strict.may_be_sent("https", "a.corp.test", 443));
        assert!(!strict.may_be_sent("https", "evil.example.com", 443));
        let plain = credential(&["127.0.0.1:8080", "api.test", "[::1]:9000"], true);
        assert!(plain.may_be_sent("http", "127.0.0.1", 8080));
        assert!(plain.may_be_sent("https", "127.0.0.1", 8080));
        assert!(!plain.may_be_sent("http", "127.0.0.1", 8081));
        assert!(plain.may_be_sent("http", "api.test", 80));
        assert!(plain.may_be_sent("https", "api.test", 443));
        assert!(!plain.may_be_sent("http", "api.test", 443));
        assert!(plain.may_be_sent("http", "::1", 9000));
        assert!(!plain.may_be_sent("ftp", "api.test", 80));
    }

    #[test]
    fn entries_that_are_not_a_host_and_a_port_are_refused() {
        for bad in [
            "",
            "api.test:",
            "api.test:0",
            "api.test:99999",
            "a b",
            "::1",
            "[::1",
            "[::1]x",
            "x/y",
        ] {
            assert!(CredentialHost::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            CredentialHost::parse("[::1]:80").expect("v6").to_string(),
            "[::1]:80"
        );
        assert_eq!(
            CredentialHost::parse("API.Test").expect("upper"),
            CredentialHost {
                glob: "api.test".to_owned(),
                port: None
            }
        );
    }

    fn parse(secrets: &str) -> Result<crate::Policy, String> {
        crate::Policy::parse(
            &format!("[secrets]\n{secrets}\n"),
            crate::policy::PolicyFormat::Toml,
        )
    }

    #[test]
    fn a_credential_written_wrong_is_an_error_not_a_readable_secret() {
        for (entry, says) in [
            (
                r#"api = { value = "v", header = "Authorization", host = ["a.test"] }"#,
                "[secrets] api: unknown key \"host\"",
            ),
            (
                r#"api = { value = "v", header = "Authorization" }"#,
                "[secrets] api: a credential needs both header",
            ),
            (
                r#"api = { env = "V", hosts = ["a.test"] }"#,
                "[secrets] api: a credential needs both header",
            ),
            (
                r#"api = { value = "v", allow_http = true }"#,
                "[secrets] api: a credential needs both header",
            ),
            (
                r#"api = { value = "v", header = "A", hosts = [] }"#,
                "hosts must be a non-empty list",
            ),
            (
                r#"api = { value = "v", header = "A", hosts = ["a.test:x"] }"#,
                "the port must be 1 to 65535",
            ),
            (
                r#"api = { value = "v", env = "V" }"#,
                "exactly one of value or env",
            ),
            ("api = 3", "a credential adds header"),
        ] {
            let err = parse(entry).expect_err(entry);
            assert!(err.contains(says), "{entry}: {err}");
            assert!(!err.contains("\"v\""), "a value in a message: {err}");
        }
        let policy = parse(
            "plain = { value = \"p\" }\n\
             api = { env = \"V\", header = \"Authorization\", hosts = [\"a.test:8443\"], allow_http = true }",
        )
        .expect("valid");
        assert_eq!(policy.secret("plain").as_deref(), Ok("p"));
        let api = policy.credential("api").expect("a credential");
        assert!(api.allow_http && api.may_be_sent("http", "a.test", 8443));
        assert!(
            policy.secret("api").is_err(),
            "a credential is not readable"
        );
    }
}

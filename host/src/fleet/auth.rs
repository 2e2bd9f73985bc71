//! Registry credentials where operators keep them: the Docker/OCI config file (`auths`, and
//! the credential helpers it names), found through the environment as `docker`, `podman` and
//! `oras` find it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, in any log or message.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, Entry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The config files to read, first found first: `REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
/// `~/.docker/config.json`, `$XDG_RUNTIME_DIR/containers/auth.json`.
fn config_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    files.extend(env("DOCKER_CONFIG").map(|d| d.join("config.json")));
    files.extend(env("HOME").map(|h| h.join(".docker/config.json")));
    files.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    files
}

/// The credentials for `registry`, if a config file has some.
///
/// # Errors
///
/// A config file that exists but does not read, or a credential helper that fails: said, with
/// the file or the helper.
pub(crate) fn credentials(registry: &str) -> Result<Option<Credentials>, String> {
    for path in config_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let config: ConfigFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a registry config file: {e}", path.display()))?;
        if let Some(helper) = config
            .cred_helpers
            .get(registry)
            .or(config.creds_store.as_ref())
        {
            if let Some(found) = helper_get(helper, registry)? {
                return Ok(Some(found));
            }
        }
        let entry = config.auths.iter().find(|(key, _)| {
            let key = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            key == registry || key.split('/').next() == Some(registry)
        });
        if let Some((_, entry)) = entry {
            return decode(entry)
                .map_err(|why| format!("{}: auths.{registry}: {why}", path.display()));
        }
    }
    Ok(None)
}

fn decode(entry: &Entry) -> Result<Option<Credentials>, String> {
    if let Some(token) = &entry.identity_token {
        return Ok(Some(Credentials {
            username: "<token>".to_owned(),
            password: token.clone(),
        }));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = &entry.auth else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("`auth` is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "`auth` is not UTF-8".to_owned())?;
    let (username, password) = text
        .split_once(':')
        .ok_or("`auth` is not base64 of USER:PASSWORD")?;
    Ok(Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

/// Asks `docker-credential-<helper> get` (the credential helpers' protocol).
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let program = format!("docker-credential-{helper}");
    let mut child = match Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("credential helper {program}: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {program}: {e}"))?;
    if !output.status.success() {
        // "credentials not found in native keychain": nothing for this registry.
        return Ok(None);
    }
    let answer: Answer = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("credential helper {program} answered something else: {e}"))?;
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auths_entries_decode_every_way_they_are_written() {
        let basic = base64::engine::general_purpose::STANDARD.encode("ada:s3cret:x");
        let found = decode(&Entry {
            auth: Some(basic),
            ..Entry::default()
        })
        .expect("decodes")
        .expect("some");
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("ada", "s3cret:x")
        );
        let bad = decode(&Entry {
            auth: Some("!!".into()),
            ..Entry::default()
        });
        assert!(bad.expect_err("not base64").contains("not base64"));
        assert!(decode(&Entry::default()).expect("empty").is_none());
    }
}

//! References in a plugin's config: a value written `{ env = "NAME" }` is the environment
//! variable's value, and one written `{ secret = "name" }` is the `[secrets]` entry's value,
//! only where the plugin is granted `secrets:name`. The host resolves them each time it hands
//! the config over (at load, on a reload, on a config change or restart); the policy keeps the
//! references, so what the host shows of a config shows them, never a value.

use airlock_abi::manifest::{covers, Capability, CapabilityKind};
use serde_json::Value;

use super::{Policy, SecretSource};

/// Values resolved from references: the shortest one hidden from messages.
const MIN_MASKED: usize = 4;

/// A config with its references resolved, and the values they brought in (hidden from any
/// message about it).
pub(crate) struct ResolvedConfig {
    /// The config the plugin is given.
    pub(crate) value: Value,
    masked: Vec<String>,
}

impl std::fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolvedConfig(<hidden>)")
    }
}

impl ResolvedConfig {
    /// `text` with every resolved value of [`MIN_MASKED`] characters or more replaced by
    /// `<hidden>`, as it is and in its escaped forms (JSON's, Rust's `Debug`): messages about a
    /// config (the plugin's own) never carry one. Schema messages about a config quote no
    /// string of it at all.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.masked.iter().fold(text.to_owned(), |text, value| {
            text.replace(value, "<hidden>")
        })
    }
}

/// What a config value is, if it is a reference.
enum Reference<'a> {
    Env(&'a str),
    Secret(&'a str),
}

impl<'a> Reference<'a> {
    /// A table of one key, `env` or `secret`, whose value is a string.
    fn of(value: &'a Value) -> Option<Self> {
        let table = value.as_object().filter(|t| t.len() == 1)?;
        match table.iter().next() {
            Some((key, Value::String(name))) if key == "env" => Some(Self::Env(name)),
            Some((key, Value::String(name))) if key == "secret" => Some(Self::Secret(name)),
            _ => None,
        }
    }
}

/// Resolves the references in `plugin`'s `config` against the environment and `policy`'s
/// secrets, under the plugin's effective `grants`.
///
/// # Errors
///
/// One line per reference that cannot be resolved: where it is (`plugins.<id>.config.<path>`),
/// what it names, and what to do.
pub(crate) fn resolve(
    plugin: &str,
    config: &Value,
    grants: &[Capability],
    policy: &Policy,
) -> Result<ResolvedConfig, Vec<String>> {
    let mut resolver = Resolver {
        plugin,
        grants,
        policy,
        masked: Vec::new(),
        errors: Vec::new(),
    };
    let value = resolver.value(config, &format!("plugins.{plugin}.config"));
    if resolver.errors.is_empty() {
        let mut masked = resolver.masked;
        // The longest first, so that a value inside another is not half hidden.
        masked.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        masked.dedup();
        Ok(ResolvedConfig { value, masked })
    } else {
        Err(resolver.errors)
    }
}

/// `value` as a message may carry it: as it is, escaped as in JSON, escaped as Rust's `Debug`
/// does, and that with `'` escaped too (as schema messages quote).
fn forms(value: &str) -> Vec<String> {
    let unquote = |quoted: String| quoted[1..quoted.len() - 1].to_owned();
    let debug = unquote(format!("{value:?}"));
    let json = unquote(Value::String(value.to_owned()).to_string());
    let quoted = debug.replace(r#"\""#, "\"").replace('\'', r"\'");
    vec![value.to_owned(), json, debug, quoted]
}

struct Resolver<'a> {
    plugin: &'a str,
    grants: &'a [Capability],
    policy: &'a Policy,
    masked: Vec<String>,
    errors: Vec<String>,
}

impl Resolver<'_> {
    fn value(&mut self, value: &Value, path: &str) -> Value {
        if let Some(reference) = Reference::of(value) {
            return match self.reference(&reference, path) {
                Ok(resolved) => {
                    if resolved.chars().count() >= MIN_MASKED {
                        self.masked.extend(forms(&resolved));
                    }
                    Value::String(resolved)
                }
                Err(why) => {
                    self.errors.push(format!("{path}: {why}"));
                    Value::Null
                }
            };
        }
        match value {
            Value::Object(table) => Value::Object(
                table
                    .iter()
                    .map(|(key, v)| (key.clone(), self.value(v, &format!("{path}.{key}"))))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(n, v)| self.value(v, &format!("{path}[{n}]")))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// The `[secrets]` entry (of any kind) whose value is read from the variable `var`.
    fn secret_behind(&self, var: &str) -> Option<&str> {
        let from = |source: &SecretSource| matches!(source, SecretSource::Env(v) if v == var);
        let policy = self.policy;
        policy
            .secrets
            .iter()
            .chain(&policy.storage_keys)
            .find(|(_, source)| from(source))
            .map(|(name, _)| name.as_str())
            .or_else(|| {
                policy
                    .credentials
                    .iter()
                    .find(|(_, credential)| from(&credential.source))
                    .map(|(name, _)| name.as_str())
            })
    }

    /// The environment variable `name`'s value.
    fn env(name: &str) -> Result<String, String> {
        std::env::var(name).map_err(|e| match e {
            std::env::VarError::NotPresent => format!(
                "{{ env = {name:?} }}: the environment variable {name} is not set; set it \
                 where the host starts, or write the value in the policy"
            ),
            std::env::VarError::NotUnicode(_) => {
                format!("{{ env = {name:?} }}: the environment variable {name} is not UTF-8 text")
            }
        })
    }

    fn reference(&self, reference: &Reference<'_>, path: &str) -> Result<String, String> {
        let plugin = self.plugin;
        match *reference {
            Reference::Env(name) => {
                if let Some(secret) = self.secret_behind(name) {
                    return Err(format!(
                        "{{ env = {name:?} }}: the environment variable {name} backs the \
                         [secrets] entry {secret}, which reaches a plugin only as \
                         {{ secret = {secret:?} }} under a grant of secrets:{secret} (and never \
                         when it is a credential, client certificate or storage key)"
                    ));
                }
                Self::env(name)
            }
            Reference::Secret(name) => {
                if !covers(self.grants, CapabilityKind::Secrets, Some(name)) {
                    return Err(format!(
                        "{{ secret = {name:?} }}: plugin {plugin} is not granted secrets:{name}; \
                         add it to grants in [plugins.{plugin}] (see {path})"
                    ));
                }
                self.policy.readable_secret(name).map_err(|why| {
                    let what = if why.never_readable() {
                        "the host never hands it to a plugin"
                    } else {
                        "add it to the policy's [secrets]"
                    };
                    format!("{{ secret = {name:?} }}: that secret {why}; {what}")
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(specs: &[&str]) -> Vec<Capability> {
        specs
            .iter()
            .map(|s| Capability::parse(s).expect("a capability"))
            .collect()
    }

    #[test]
    fn references_resolve_where_granted_and_say_where_they_fail() {
        let mut policy = Policy::default();
        policy.set_secret("token", SecretSource::Value("t0ken-value".to_owned()));
        let config = serde_json::json!({
            "url": "https://example.test",
            "auth": { "token": { "secret": "token" } },
            "list": [{ "env": "PATH" }],
            "literal": { "env": "PATH", "other": 1 },
        });
        let resolved =
            resolve("p", &config, &grants(&["secrets:tok*"]), &policy).expect("resolves");
        assert_eq!(resolved.value["auth"]["token"], "t0ken-value");
        assert_eq!(
            resolved.value["list"][0].as_str(),
            std::env::var("PATH").ok().as_deref()
        );
        assert_eq!(
            resolved.value["literal"], config["literal"],
            "not a reference"
        );
        assert_eq!(
            resolved.mask("got \"t0ken-value\" at /auth"),
            "got \"<hidden>\" at /auth"
        );

        let errors = resolve("p", &config, &grants(&[]), &policy).expect_err("not granted");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("plugins.p.config.auth.token: ")
                && errors[0].contains("not granted secrets:token"),
            "{errors:?}"
        );
        let missing = serde_json::json!({
            "a": { "secret": "nothing" },
            "b": [1, { "env": "AIRLOCK_TEST_SURELY_UNSET" }],
        });
        let errors = resolve("p", &missing, &grants(&["secrets:*"]), &policy).expect_err("missing");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("plugins.p.config.a:") && errors[0].contains("[secrets]"));
        assert!(
            errors[1].contains("plugins.p.config.b[1]:")
                && errors[1].contains("AIRLOCK_TEST_SURELY_UNSET is not set"),
            "{errors:?}"
        );
    }

    #[test]
    fn an_env_reference_to_a_variable_behind_any_secret_is_refused() {
        let policy = Policy::parse(
            "[secrets]\n\
             readable = { env = \"AIRLOCK_REF_READABLE\" }\n\
             api = { env = \"AIRLOCK_REF_TOKEN\", header = \"Authorization\", hosts = [\"a.test\"] }\n\
             kv-key = { env = \"AIRLOCK_REF_KV\", kind = \"storage_key\" }\n",
            crate::policy::PolicyFormat::Toml,
        )
        .expect("a policy");
        for (var, secret) in [
            ("AIRLOCK_REF_READABLE", "readable"),
            ("AIRLOCK_REF_TOKEN", "api"),
            ("AIRLOCK_REF_KV", "kv-key"),
        ] {
            let config = serde_json::json!({ "deep": [{ "key": { "env": var } }] });
            // Granted every secret, set or not: the variable is still refused, by name.
            let errors =
                resolve("p", &config, &grants(&["secrets:*"]), &policy).expect_err("refused");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].starts_with("plugins.p.config.deep[0].key: ")
                    && errors[0].contains(&format!("backs the [secrets] entry {secret}"))
                    && errors[0].contains(&format!("{{ secret = {secret:?} }}")),
                "{errors:?}"
            );
        }
        let unrelated = serde_json::json!({ "path": { "env": "PATH" } });
        assert!(resolve("p", &unrelated, &grants(&[]), &policy).is_ok());
    }

    #[test]
    fn a_resolved_value_is_hidden_in_its_escaped_forms_too() {
        let mut policy = Policy::default();
        let value = "pa\\ss'w0rd\"x\n";
        policy.set_secret("pw", SecretSource::Value(value.to_owned()));
        let config = serde_json::json!({ "pw": { "secret": "pw" } });
        let resolved = resolve("p", &config, &grants(&["secrets:pw"]), &policy).expect("resolves");
        let quoted = format!("{value:?}")
            .replace("\\\"", "\"")
            .replace('\'', "\\'");
        for text in [
            value.to_owned(),
            format!("{value:?}"),
            serde_json::Value::String(value.to_owned()).to_string(),
            quoted,
        ] {
            let masked = resolved.mask(&format!("got {text} here"));
            assert!(masked.contains("<hidden>"), "{masked}");
            for part in ["pa\\", "w0rd"] {
                assert!(!masked.contains(part), "{masked}");
            }
        }
    }
}

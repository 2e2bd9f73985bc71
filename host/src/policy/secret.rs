//! Whether a secret the policy names is readable by a plugin: the one decision the `secrets`
//! service, `{ secret = "…" }` references and [`Policy::secret`] make alike.

use super::Policy;

/// Why a secret is not handed to a plugin: what the policy makes of it, or why it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// A credential: the host attaches it to outbound HTTP requests.
    Credential,
    /// A client certificate: the host presents it in outbound TLS.
    ClientCertificate,
    /// A storage key (`kind = "storage_key"`): the host seals kv values with it.
    StorageKey,
    /// Not available: the policy's `[secrets]` table does not provide it, or its environment
    /// variable is unset (the message never contains a value).
    Unavailable(String),
}

impl Unreadable {
    /// Whether the secret exists but is never readable (a credential, a client certificate or
    /// a storage key), rather than missing.
    pub fn never_readable(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Credential => {
                f.write_str("is a credential: usable in outbound HTTP requests, never readable")
            }
            Self::ClientCertificate => f.write_str(
                "is a client certificate: presented by the host in outbound TLS, never readable",
            ),
            Self::StorageKey => f.write_str(
                "is a storage key: the host seals kv values with it, never readable (kind = \
                 \"storage_key\")",
            ),
            Self::Unavailable(why) => write!(f, "is not available: {why}"),
        }
    }
}

impl Policy {
    /// The value of the secret `name` if a plugin may read it: not a credential, a client
    /// certificate or a storage key, and provided.
    ///
    /// # Errors
    ///
    /// [`Unreadable`]: what the secret is, or why it is not available.
    pub fn readable_secret(&self, name: &str) -> Result<String, Unreadable> {
        if self.credential(name).is_some() {
            return Err(Unreadable::Credential);
        }
        if self.client_certificate(name).is_some() {
            return Err(Unreadable::ClientCertificate);
        }
        if self.is_storage_key(name) {
            return Err(Unreadable::StorageKey);
        }
        match self.secrets.get(name) {
            Some(source) => source.read().map_err(Unreadable::Unavailable),
            None => Err(Unreadable::Unavailable(
                "the policy's [secrets] table does not provide it".to_owned(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyFormat;

    #[test]
    fn a_secret_is_readable_only_if_it_is_none_of_the_kinds_the_host_keeps() {
        let policy = Policy::parse(
            "[secrets]\nplain = \"s3cret\"\nunset = { env = \"AIRLOCK_TEST_UNSET_SECRET_KIND\" }\n\
             sealing = { value = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\", kind = \"storage_key\" }\n\
             token = { value = \"t\", header = \"Authorization\", hosts = [\"api.example.com\"] }\n",
            PolicyFormat::Toml,
        )
        .expect("parses");
        assert_eq!(policy.readable_secret("plain").as_deref(), Ok("s3cret"));
        assert_eq!(policy.readable_secret("token"), Err(Unreadable::Credential));
        assert_eq!(
            policy.readable_secret("sealing"),
            Err(Unreadable::StorageKey)
        );
        for missing in ["unset", "nowhere"] {
            let refused = policy.readable_secret(missing).expect_err("missing");
            assert!(!refused.never_readable(), "{refused}");
        }
        assert!(Unreadable::ClientCertificate.never_readable());
        // `secret` says the same, in words.
        let refused = policy.secret("token").expect_err("a credential");
        assert!(refused.contains("credential"), "{refused}");
    }
}

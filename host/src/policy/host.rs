//! The `[host]` table's settings, and what they say beyond paths: the names pinned to
//! addresses (DNS names, so one name whatever its case), and the owners and groups trusted to
//! write libraries besides the host's user and root (names looked up in `/etc/passwd` and
//! `/etc/group`, or numeric ids).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

use crate::library::permissions::accounts::{group_id, user_id};
use crate::library::permissions::Trusted;

/// Host-wide settings from the policy's `[host]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// Where the key/value store lives (`kv.redb`); without it there is no `kv` service.
    pub data_dir: Option<PathBuf>,
    /// Where audit records are appended as JSON lines.
    pub audit_log: Option<PathBuf>,
    /// A lock file written by `airlock lock`: only the libraries it pins may load.
    pub lock: Option<PathBuf>,
    /// Warn when more libraries than this are retained (loaded and never unloaded).
    pub max_retained: Option<usize>,
    /// The worker executable isolated plugins run in (default: `airlock-worker` beside the
    /// host program).
    pub worker: Option<PathBuf>,
    /// Keep the host process dumpable although it runs isolated plugins (`dumpable = true`).
    /// By default a host marks itself non-dumpable before it starts its first worker: its
    /// memory (`/proc/<pid>/mem`, ptrace) is then closed to every process without
    /// `CAP_SYS_PTRACE` — which a sandboxed worker never has — even one of the same user and
    /// even where Landlock is missing. The price: no core dumps of the host, and no debugger
    /// attaching to it without that capability.
    pub dumpable: bool,
    /// Host names pinned to addresses for plugins' outbound HTTP (`HostBuilder::resolve`),
    /// used instead of the system's resolver; the addresses are still checked. The names are
    /// in lower case (DNS names do not depend on case); look one up with
    /// [`HostSettings::pinned`].
    pub resolve: BTreeMap<String, Vec<std::net::IpAddr>>,
    /// Users besides the host's own and root who may own a library or the directory holding
    /// it (`trusted_owners`: names from `/etc/passwd`, or uids), as uids. Unix only.
    pub trusted_owners: Vec<u32>,
    /// Groups that may write a library or the directory holding it (`trusted_groups`: names
    /// from `/etc/group`, or gids), as gids. Writable by every user is never trusted. Unix only.
    pub trusted_groups: Vec<u32>,
    /// Load every library from a sealed copy (`always_seal = true`), even one that only root
    /// and the host's own user can change, which is otherwise loaded in place.
    pub always_seal: bool,
    /// Registries (`HOST` or `HOST:PORT`) spoken to over plain HTTP (`insecure_registries`);
    /// a registry on a loopback address always is, every other one over TLS.
    pub insecure_registries: Vec<String>,
    /// Certificates (PEM files) trusted as roots besides the built-in ones (`tls_roots`): an
    /// internal CA, for plugins' outbound HTTPS and for OCI registries. Read when used.
    pub tls_roots: Vec<PathBuf>,
    /// How long a pending answer or a call waiting for approval stays open
    /// (`pending_ttl_secs`; [`super::DEFAULT_PENDING_TTL`] when not set, at most [`super::MAX_PENDING_TTL`]).
    pub pending_ttl: Option<std::time::Duration>,
}

impl HostSettings {
    /// The addresses `name` is pinned to (`[host] resolve`, `HostBuilder::resolve`), whatever
    /// the case it is written in: DNS names do not depend on case.
    pub fn pinned(&self, name: &str) -> Option<&[IpAddr]> {
        let folded = name.to_ascii_lowercase();
        self.resolve
            .get(&folded)
            .or_else(|| {
                // Set in code by an embedder, in another case.
                self.resolve
                    .iter()
                    .find(|(pinned, _)| pinned.eq_ignore_ascii_case(name))
                    .map(|(_, addresses)| addresses)
            })
            .map(Vec::as_slice)
    }

    /// The owners and groups stage 1 trusts besides the host's user and root.
    pub(crate) fn trusted(&self) -> Trusted<'_> {
        Trusted {
            owners: &self.trusted_owners,
            groups: &self.trusted_groups,
        }
    }
}

/// `[host] resolve`, its names in lower case; two names that differ only in case are an error
/// naming both (which addresses were meant would be a guess).
pub(super) fn pinned_names(
    raw: BTreeMap<String, Vec<IpAddr>>,
) -> Result<BTreeMap<String, Vec<IpAddr>>, String> {
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut pinned = BTreeMap::new();
    for (name, addresses) in raw {
        let folded = name.to_ascii_lowercase();
        if let Some(first) = written.get(&folded) {
            return Err(format!(
                "[host] resolve: {first:?} and {name:?} are one name (DNS names do not depend on \
                 case); keep one of the two entries"
            ));
        }
        written.insert(folded.clone(), name);
        pinned.insert(folded, addresses);
    }
    Ok(pinned)
}

/// A user or group as a policy names it: by name, or by numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawAccount {
    /// A numeric uid or gid.
    Id(u32),
    /// A name, looked up in `/etc/passwd` or `/etc/group`.
    Name(String),
}

impl<'de> Deserialize<'de> for RawAccount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Account;
        impl Visitor<'_> for Account {
            type Value = RawAccount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user or group name, or a numeric id")
            }

            fn visit_i64<E: Error>(self, id: i64) -> Result<RawAccount, E> {
                u32::try_from(id)
                    .map(RawAccount::Id)
                    .map_err(|_| E::custom(format!("{id} is not a user or group id")))
            }

            fn visit_u64<E: Error>(self, id: u64) -> Result<RawAccount, E> {
                u32::try_from(id)
                    .map(RawAccount::Id)
                    .map_err(|_| E::custom(format!("{id} is not a user or group id")))
            }

            fn visit_str<E: Error>(self, name: &str) -> Result<RawAccount, E> {
                Ok(RawAccount::Name(name.to_owned()))
            }
        }
        deserializer.deserialize_any(Account)
    }
}

/// `[host] trusted_owners`, as uids.
pub(super) fn trusted_owners(raw: &[RawAccount]) -> Result<Vec<u32>, String> {
    ids(raw, "trusted_owners", user_id)
}

/// `[host] trusted_groups`, as gids.
pub(super) fn trusted_groups(raw: &[RawAccount]) -> Result<Vec<u32>, String> {
    ids(raw, "trusted_groups", group_id)
}

fn ids(
    raw: &[RawAccount],
    key: &str,
    look_up: fn(&str) -> Result<u32, String>,
) -> Result<Vec<u32>, String> {
    raw.iter()
        .map(|account| match account {
            RawAccount::Id(id) => Ok(*id),
            RawAccount::Name(name) => look_up(name).map_err(|e| format!("[host] {key}: {e}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::policy::{Policy, PolicyFormat};

    const ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn pinned_names_are_one_name_whatever_their_case() {
        let policy = Policy::parse(
            "[host]\nresolve = { \"API.Example.com\" = [\"10.1.2.3\"] }\n",
            PolicyFormat::Toml,
        )
        .expect("valid");
        let host = policy.host();
        assert_eq!(host.pinned("api.example.com"), Some(&[ADDRESS][..]));
        assert_eq!(host.pinned("API.EXAMPLE.COM"), Some(&[ADDRESS][..]));
        assert!(host.resolve.contains_key("api.example.com"));
        assert_eq!(host.pinned("other.example.com"), None);
    }

    #[test]
    fn two_entries_folding_to_one_name_are_an_error_naming_both() {
        for (text, format) in [
            (
                "[host]\nresolve = { \"API.example.com\" = [\"10.1.2.3\"], \"api.example.com\" = [\"10.9.9.9\"] }\n",
                PolicyFormat::Toml,
            ),
            (
                r#"{"host":{"resolve":{"API.example.com":["10.1.2.3"],"api.example.com":["10.9.9.9"]}}}"#,
                PolicyFormat::Json,
            ),
        ] {
            let err = Policy::parse(text, format).expect_err("refused");
            assert!(err.contains("[host] resolve"), "{err}");
            assert!(
                err.contains("\"API.example.com\"") && err.contains("\"api.example.com\""),
                "{err}"
            );
        }
    }

    #[test]
    fn a_name_pinned_in_code_in_another_case_is_still_found() {
        let mut policy = Policy::default();
        policy
            .host_mut()
            .resolve
            .insert("Mixed.Example".to_owned(), vec![ADDRESS]);
        assert_eq!(policy.host().pinned("mixed.example"), Some(&[ADDRESS][..]));
    }

    #[test]
    fn trusted_accounts_are_read_as_ids_or_names() {
        let policy = Policy::parse(
            "[host]\ntrusted_owners = [1001, \"root\"]\ntrusted_groups = [2001]\n",
            PolicyFormat::Toml,
        )
        .expect("valid");
        assert_eq!(policy.host().trusted_owners, [1001, 0]);
        assert_eq!(policy.host().trusted_groups, [2001]);
        let policy = Policy::parse(
            r#"{"host":{"trusted_groups":["root", 7]}}"#,
            PolicyFormat::Json,
        )
        .expect("valid");
        assert_eq!(policy.host().trusted_groups, [0, 7]);
    }

    #[test]
    fn unknown_or_malformed_accounts_are_errors_naming_the_key() {
        let err = Policy::parse(
            "[host]\ntrusted_owners = [\"no-such-user-here\"]\n",
            PolicyFormat::Toml,
        )
        .expect_err("refused");
        assert!(
            err.contains("[host] trusted_owners") && err.contains("no-such-user-here"),
            "{err}"
        );
        let err = Policy::parse("[host]\ntrusted_groups = [-1]\n", PolicyFormat::Toml)
            .expect_err("refused");
        assert!(
            err.contains("trusted_groups") && err.contains("-1"),
            "{err}"
        );
        let err = Policy::parse("[host]\ntrusted_groups = [true]\n", PolicyFormat::Toml)
            .expect_err("refused");
        assert!(
            err.contains("a user or group name, or a numeric id"),
            "{err}"
        );
    }
}

//! Stage 3, decide: versions, build provenance and the operator's policy, all from what stage 2
//! read out of the file. Still nothing of the plugin has run.

use airlock_abi::abi::{check_compatible, BUILD_TARGET};
use airlock_abi::manifest::covers;
use airlock_abi::manifest::{Capability, DeclaredCapability};
use airlock_abi::ABI_VERSION;

use crate::error::{Refusal, RefusalReason};
use crate::library::file::LibraryFile;
use crate::library::lock::Lock;
use crate::policy::{with_declared, PluginPolicy, Policy};

/// What stage 3 decided for a library it accepts.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The operator's entry for the plugin.
    pub policy: PluginPolicy,
    /// Effective grants: declared in the manifest ∩ granted by the policy.
    pub grants: Vec<Capability>,
    /// What the operator should know though nothing refuses it: the grant lint's warning
    /// ([`crate::policy::authority_warning`]).
    pub warnings: Vec<String>,
}

/// Checks one library against this host and the policy.
///
/// # Errors
///
/// A [`Refusal`] saying what was expected and what was found: `abi_incompatible`,
/// `build_mismatch`, `disabled`, `hash_mismatch` or `not_granted`.
pub fn decide(
    file: &LibraryFile,
    policy: &Policy,
    lock: Option<&Lock>,
) -> Result<Decision, Refusal> {
    let refuse = |(reason, detail): Refused| {
        Refusal::new(&file.path, reason, detail).with_id(&file.manifest.id)
    };
    check_jobs(file).map_err(refuse)?;
    check_abi(file).map_err(refuse)?;
    check_build(file).map_err(refuse)?;
    let entry = policy.for_plugin(&file.manifest.id);
    check_enabled(file, entry, policy).map_err(refuse)?;
    // A built-in plugin has no file, so nothing to hash, pin or sign: it is part of the host
    // binary.
    if !file.is_builtin() {
        check_policy_pins(file, entry, policy).map_err(refuse)?;
        if let Some(lock) = lock {
            check_lock_pin(file, lock).map_err(refuse)?;
        }
        check_signature(file, &entry.signature, policy).map_err(refuse)?;
    }
    let grants = effective_grants(&file.manifest.capabilities, &entry.grants);
    check_required_granted(file, &grants).map_err(refuse)?;
    let warnings = crate::policy::authority_warning(policy, &file.manifest.id, &grants)
        .map(|w| w.to_string())
        .into_iter()
        .collect();
    // The operator's rules first, then those of the permissions the plugin declares: the
    // operator's override the plugin's defaults.
    let mut entry = entry.clone();
    entry.permissions = with_declared(&entry.permissions, &file.manifest.permissions);
    Ok(Decision {
        policy: entry,
        grants,
        warnings,
    })
}

/// Why a check refuses a library: the reason and its detail, which [`decide`] makes a
/// [`Refusal`] naming the file and the plugin.
type Refused = (RefusalReason, String);

/// Where the policy was read from, for messages.
fn policy_source(policy: &Policy) -> String {
    policy
        .source()
        .map_or_else(|| "the policy".to_owned(), |p| p.display().to_string())
}

/// The manifest's cron expressions, which the ABI crate cannot parse itself.
fn check_jobs(file: &LibraryFile) -> Result<(), Refused> {
    for job in &file.manifest.jobs {
        if let Some(expression) = &job.cron {
            crate::services::timers::parse_cron(expression).map_err(|e| {
                (
                    RefusalReason::BadManifest,
                    format!("job {:?}: {e}", job.name),
                )
            })?;
        }
    }
    Ok(())
}

/// The ABI version the plugin was built against, compatible with this host's.
fn check_abi(file: &LibraryFile) -> Result<(), Refused> {
    let host_abi = semver::Version::parse(ABI_VERSION).map_err(|e| {
        (
            RefusalReason::AbiIncompatible,
            format!("this host's ABI version is invalid: {e}"),
        )
    })?;
    let plugin_abi = semver::Version::parse(&file.block.abi_version).map_err(|_| {
        (
            RefusalReason::AbiIncompatible,
            format!(
                "the plugin declares airlock-abi {:?}, which is not semver",
                file.block.abi_version
            ),
        )
    })?;
    check_compatible(&host_abi, &plugin_abi).map_err(|why| {
        (
            RefusalReason::AbiIncompatible,
            format!(
                "built against airlock-abi {plugin_abi}; this host speaks {host_abi}: {why}; rebuild the plugin against airlock-abi {}.{}",
                host_abi.major, host_abi.minor
            ),
        )
    })
}

/// The build's provenance: this host's target, and panics that unwind (so they can be
/// contained).
fn check_build(file: &LibraryFile) -> Result<(), Refused> {
    if file.block.target != BUILD_TARGET {
        return Err((
            RefusalReason::BuildMismatch,
            format!(
                "built for target {}; this host is {BUILD_TARGET}",
                file.block.target
            ),
        ));
    }
    if file.block.panic != "unwind" {
        return Err((
            RefusalReason::BuildMismatch,
            format!(
                "built with panic = {:?}; plugins must be built with panic = \"unwind\" so that a panic can be contained",
                file.block.panic
            ),
        ));
    }
    Ok(())
}

/// The policy's `enabled` for the plugin.
fn check_enabled(file: &LibraryFile, entry: &PluginPolicy, policy: &Policy) -> Result<(), Refused> {
    if entry.enabled {
        return Ok(());
    }
    Err((
        RefusalReason::Disabled,
        format!(
            "disabled by {} ([plugins.{}] enabled = false)",
            policy_source(policy),
            file.manifest.id
        ),
    ))
}

/// The hashes the policy pins for the plugin, if it pins any.
fn check_policy_pins(
    file: &LibraryFile,
    entry: &PluginPolicy,
    policy: &Policy,
) -> Result<(), Refused> {
    if entry.blake3.is_none() && entry.sha256.is_none() {
        return Ok(());
    }
    let source = policy_source(policy);
    check_pins(
        file,
        entry.blake3.as_deref(),
        entry.sha256.as_deref(),
        &format!("pinned in {source}"),
        &format!(
            "review the new build and update the pin under [plugins.{}] in {source}",
            file.manifest.id
        ),
    )
    .map_err(|detail| (RefusalReason::HashMismatch, detail))
}

/// The hashes the lock file pins for the plugin, which it must name.
fn check_lock_pin(file: &LibraryFile, lock: &Lock) -> Result<(), Refused> {
    let Some(pin) = lock.get(&file.manifest.id) else {
        return Err((
            RefusalReason::HashMismatch,
            format!(
                "{} is not pinned in the lock file {}; review it and run `airlock lock` again",
                file.manifest.id,
                lock.path().display()
            ),
        ));
    };
    check_pins(
        file,
        pin.blake3.as_deref(),
        pin.sha256.as_deref(),
        &format!("pinned in {}", lock.path().display()),
        "review the new build and run `airlock lock` again",
    )
    .map_err(|detail| (RefusalReason::HashMismatch, detail))
}

/// Every capability the manifest requires among the effective grants.
fn check_required_granted(file: &LibraryFile, grants: &[Capability]) -> Result<(), Refused> {
    let manifest = &file.manifest;
    match manifest
        .capabilities
        .iter()
        .find(|c| c.required && !grants.contains(&c.capability))
    {
        Some(missing) => Err((
            RefusalReason::NotGranted,
            format!(
                "requires capability {} which is not granted; to allow it add \"{}\" to grants under [plugins.{}] in the policy",
                missing.capability, missing.capability, manifest.id
            ),
        )),
        None => Ok(()),
    }
}

/// Compares the file with the pins that are set; on a difference, the refusal's detail: which
/// hash, expected (and where it is pinned) and found, and what to do. SHA-256 is computed only
/// here, and only when a pin asks for it.
fn check_pins(
    file: &LibraryFile,
    blake3: Option<&str>,
    sha256: Option<&str>,
    source: &str,
    remedy: &str,
) -> Result<(), String> {
    let mismatch = |algorithm: &str, expected: &str, found: &str| {
        format!("expected {algorithm} {expected} ({source}), found {found}; {remedy}")
    };
    if let Some(expected) = blake3.filter(|&pin| pin != file.blake3) {
        return Err(mismatch("blake3", expected, &file.blake3));
    }
    if let Some(expected) = sha256 {
        let found = file
            .sha256()
            .unwrap_or("nothing (the file's bytes were already released)");
        if expected != found {
            return Err(mismatch("sha256", expected, found));
        }
    }
    Ok(())
}

/// Declared ∩ granted: a declared capability is effective when the policy grants it exactly,
/// or grants a scope glob that covers the declared scope; and a grant narrower than a
/// declaration (`service:editor.read` granted, `service:editor.*` declared) is effective as
/// granted.
pub fn effective_grants(
    declared: &[DeclaredCapability],
    granted: &[Capability],
) -> Vec<Capability> {
    let mut effective: Vec<Capability> = declared
        .iter()
        .map(|d| &d.capability)
        .filter(|cap| granted.iter().any(|g| grant_covers(g, cap)))
        .cloned()
        .collect();
    for grant in granted {
        let narrower = declared.iter().any(|d| grant_covers(&d.capability, grant));
        if narrower && !effective.iter().any(|e| grant_covers(e, grant)) {
            effective.push(grant.clone());
        }
    }
    effective
}

/// Whether `grant` covers `wanted`: same kind, and the grant's scope glob matches the wanted
/// scope (`*` matches any run of characters).
pub fn grant_covers(grant: &Capability, wanted: &Capability) -> bool {
    covers(std::slice::from_ref(grant), wanted.kind(), wanted.scope())
}

/// Whether what stage 2 found of `file`'s signature will do for `rule`: a signature that does not
/// verify never does; with a signature required, neither does none or one by a key the policy
/// does not trust; with `signed_by`, only those publishers' do.
fn check_signature(
    file: &LibraryFile,
    rule: &crate::policy::SignaturePolicy,
    policy: &Policy,
) -> Result<(), Refused> {
    use crate::library::signature::{signature_path, SignatureStatus};
    let source = policy_source(policy);
    let required = rule.required();
    let line = if rule.required {
        format!(
            "{} signature = \"required\" in {source}",
            rule.required_source
        )
    } else {
        format!(
            "{} signed_by = {:?} in {source}",
            rule.signed_by_source, rule.signed_by
        )
    };
    match &file.signature {
        SignatureStatus::Invalid { key_id, why } => Err((
            RefusalReason::BadSignature,
            format!(
                "{why}{}; sign this build again (`airlock sign`) or remove the signature",
                key_id
                    .as_ref()
                    .map(|id| format!(" (key {id})"))
                    .unwrap_or_default()
            ),
        )),
        SignatureStatus::Unsigned if required => Err((
            RefusalReason::Unsigned,
            format!(
                "no signature beside it (expected {}); {line}",
                signature_path(&file.path).display()
            ),
        )),
        SignatureStatus::Untrusted { key_id } if required => Err((
            RefusalReason::UntrustedSigner,
            format!(
                "signed by key {key_id}, which [trust] in {source} does not name; {line}; if you \
                 trust its publisher, add its public key under [trust]"
            ),
        )),
        SignatureStatus::Verified {
            publisher, key_id, ..
        } if !rule.signed_by.is_empty() && !rule.signed_by.contains(publisher) => Err((
            RefusalReason::UntrustedSigner,
            format!(
                "signed by {publisher} (key {key_id}), but {} signed_by = {:?} in {source}",
                rule.signed_by_source, rule.signed_by
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_abi::manifest::glob_match;

    fn cap(s: &str) -> Capability {
        Capability::parse(s).expect("valid capability")
    }

    #[test]
    fn glob_table() {
        for (pattern, text, expected) in [
            ("a", "a", true),
            ("a", "b", false),
            ("*", "", true),
            ("*", "anything", true),
            ("demo.*", "demo.tick", true),
            ("demo.*", "demo", false),
            ("demo.*", "other.tick", false),
            ("*.tick", "demo.tick", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn effective_is_declared_intersect_granted() {
        let declared: Vec<DeclaredCapability> = ["kv", "timers", "events.publish:demo.tick"]
            .iter()
            .map(|c| DeclaredCapability {
                capability: cap(c),
                required: false,
                reason: None,
            })
            .collect();
        let granted = vec![
            cap("kv"),
            cap("events.publish:demo.*"),
            cap("secrets:token"),
        ];
        let effective = effective_grants(&declared, &granted);
        assert_eq!(effective, vec![cap("kv"), cap("events.publish:demo.tick")]);
    }

    #[test]
    fn a_grant_narrower_than_the_declaration_is_effective_as_granted() {
        let declared = vec![DeclaredCapability {
            capability: cap("service:editor.*"),
            required: false,
            reason: None,
        }];
        let granted = vec![cap("service:editor.read"), cap("service:other.read")];
        assert_eq!(
            effective_grants(&declared, &granted),
            vec![cap("service:editor.read")]
        );
    }
}

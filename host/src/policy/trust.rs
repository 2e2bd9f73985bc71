//! The policy's publisher rules: `[trust]` (the keys it trusts, by name) and, per plugin or in
//! `[defaults]`, `signature = "required" | "optional"` and `signed_by`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Policy;

/// Whether a plugin's library must carry a publisher's signature, and whose
/// ([`crate::signature`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// Refuse the library unless it carries a valid signature by a trusted key (`unsigned`,
    /// `untrusted_signer`). A signature that does not verify is refused either way
    /// (`bad_signature`).
    pub required: bool,
    /// If not empty, the names in `[trust]` whose signature is accepted (`untrusted_signer`
    /// for another trusted key).
    pub signed_by: Vec<String>,
    /// Where the policy says so (`[defaults]`, `[plugins.<id>]`), for messages.
    pub source: String,
}

/// `signature = "required" | "optional"`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawSignature {
    Required,
    Optional,
}

/// `base` with what a policy file's `table` sets instead; each name in `signed_by` must be
/// in `[trust]`.
pub(super) fn signature(
    policy: &Policy,
    base: &SignaturePolicy,
    required: Option<RawSignature>,
    signed_by: Option<Vec<String>>,
    table: &str,
) -> Result<SignaturePolicy, String> {
    if required.is_none() && signed_by.is_none() {
        return Ok(base.clone());
    }
    let signed_by = signed_by.unwrap_or_else(|| base.signed_by.clone());
    if let Some(unknown) = signed_by.iter().find(|n| !policy.trust().contains_key(*n)) {
        return Err(format!(
            "{table} signed_by: {unknown:?} is not a key in [trust]"
        ));
    }
    Ok(SignaturePolicy {
        required: required.map_or(base.required, |r| matches!(r, RawSignature::Required)),
        signed_by,
        source: table.to_owned(),
    })
}

/// `[trust]`: each key checked to be a minisign public key.
pub(super) fn trust(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    raw.into_iter()
        .map(|(name, key)| {
            crate::signature::public_key_id(&key).map_err(|e| {
                format!("[trust] {name}: {e}; give the second line of its .pub file")
            })?;
            Ok((name, key.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use airlock_abi::manifest::PluginId;

    use super::*;

    /// A minisign public key (its second line): key id 1122334455667788, an all-zero key.
    const KEY: &str = "RWSId2ZVRDMiEQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn trusted_keys_and_signature_rules_are_read_and_checked() {
        assert_eq!(
            crate::signature::public_key_id(KEY).as_deref(),
            Ok("1122334455667788")
        );
        let policy = Policy::parse(
            &format!(
                "[trust]\nacme = \"{KEY}\"\n[defaults]\nsignature = \"required\"\n\
                 [plugins.hello]\nsigned_by = [\"acme\"]\n[plugins.free]\nsignature = \"optional\"\n"
            ),
            false,
        )
        .expect("valid");
        let id = |s: &str| PluginId::new(s).expect("id");
        let hello = &policy.for_plugin(&id("hello")).signature;
        assert!(hello.required, "inherited from [defaults]");
        assert_eq!(hello.signed_by, ["acme"]);
        assert_eq!(hello.source, "[plugins.hello]");
        assert!(!policy.for_plugin(&id("free")).signature.required);
        assert!(policy.for_plugin(&id("other")).signature.required);
        for (bad, says) in [
            ("[trust]\nacme = \"not a key\"\n", "[trust] acme"),
            (
                "[plugins.x]\nsigned_by = [\"nobody\"]\n",
                "not a key in [trust]",
            ),
            ("[defaults]\nsignature = \"sometimes\"\n", "signature"),
        ] {
            let err = Policy::parse(bad, false).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

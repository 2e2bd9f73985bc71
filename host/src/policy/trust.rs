//! The policy's publisher rules: `[trust]` (the keys it trusts, by name) and, per plugin or in
//! `[defaults]`, `signature = "required" | "optional"` and `signed_by`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Policy;

/// Whether a plugin's library must carry a publisher's signature, and whose (what stage 3
/// decides on, with the signature's status as stage 2 read it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// `signature = "required"`: refuse the library unless it carries a valid signature by a
    /// trusted key (`unsigned`, `untrusted_signer`). A signature that does not verify is
    /// refused either way (`bad_signature`).
    pub required: bool,
    /// If not empty, the names in `[trust]` whose signature is accepted — and a signature is
    /// then required (`untrusted_signer` for another key).
    pub signed_by: Vec<String>,
    /// Where the policy sets `signature` (`[defaults]`, `[plugins.<id>]`), for messages.
    pub required_source: String,
    /// Where the policy sets `signed_by`, for messages.
    pub signed_by_source: String,
}

impl SignaturePolicy {
    /// Whether a valid signature by a trusted key is required: `signature = "required"`, or a
    /// `signed_by` naming who must have signed.
    pub fn required(&self) -> bool {
        self.required || !self.signed_by.is_empty()
    }
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
    if let Some(unknown) = signed_by
        .iter()
        .flatten()
        .find(|n| !policy.trust().contains_key(*n))
    {
        return Err(format!(
            "{table} signed_by: {unknown:?} is not a key in [trust]"
        ));
    }
    let mut rule = base.clone();
    if let Some(required) = required {
        rule.required = matches!(required, RawSignature::Required);
        rule.required_source = table.to_owned();
    }
    if let Some(signed_by) = signed_by {
        rule.signed_by = signed_by;
        rule.signed_by_source = table.to_owned();
    }
    Ok(rule)
}

/// `[trust]`: each key checked to be a minisign public key, and named once.
pub(super) fn trust(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    raw.into_iter()
        .map(|(name, key)| {
            let id = crate::library::signature::public_key_id(&key).map_err(|e| {
                format!("[trust] {name}: {e}; give the second line of its .pub file")
            })?;
            if let Some(first) = ids.insert(id.clone(), name.clone()) {
                return Err(format!(
                    "[trust] {name}: key {id} is already trusted as {first}; name each key once"
                ));
            }
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
            crate::library::signature::public_key_id(KEY).as_deref(),
            Ok("1122334455667788")
        );
        let policy = Policy::parse(
            &format!(
                "[trust]\nacme = \"{KEY}\"\n[defaults]\nsignature = \"required\"\n\
                 [plugins.hello]\nsigned_by = [\"acme\"]\n[plugins.free]\nsignature = \"optional\"\n"
            ),
            crate::policy::PolicyFormat::Toml,
        )
        .expect("valid");
        let id = |s: &str| PluginId::new(s).expect("id");
        let hello = &policy.for_plugin(&id("hello")).signature;
        assert!(hello.required, "inherited from [defaults]");
        assert_eq!(hello.signed_by, ["acme"]);
        assert_eq!(hello.signed_by_source, "[plugins.hello]");
        assert_eq!(hello.required_source, "[defaults]");
        assert!(!policy.for_plugin(&id("free")).signature.required());
        assert!(policy.for_plugin(&id("other")).signature.required());
        for (bad, says) in [
            ("[trust]\nacme = \"not a key\"\n", "[trust] acme"),
            (
                "[plugins.x]\nsigned_by = [\"nobody\"]\n",
                "not a key in [trust]",
            ),
            ("[defaults]\nsignature = \"sometimes\"\n", "signature"),
            (
                &format!("[trust]\na = \"{KEY}\"\nb = \"{KEY}\"\n"),
                "already trusted as a",
            ),
        ] {
            let err = Policy::parse(bad, crate::policy::PolicyFormat::Toml).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

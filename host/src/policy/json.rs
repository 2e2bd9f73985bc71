//! A JSON policy names each key of an object once. serde_json keeps the last of two equal keys
//! without a word, so an operator who writes `"enabled": false` and, further down the same
//! object, `"enabled": true` would get a policy other than the one they read; TOML refuses
//! this, and so does this pre-pass over the JSON before it is read as a policy.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Refuses `text` if any object in it, at any depth, names a key twice: the message names the
/// key and the path of keys to the object (`plugins.hello.config`), with serde_json's line and
/// column. Malformed JSON is left to the policy's own reading, which reports it. Permission
/// rules refuse a call's input the same way before a `match` reads it.
pub(super) fn refuse_duplicate_keys(text: &str) -> Result<(), String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match (Walk { path: "" }).deserialize(&mut deserializer) {
        Err(e) if e.is_data() => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// One JSON value at `path` (the keys and indices that lead to it, `""` at the top).
struct Walk<'a> {
    path: &'a str,
}

impl Walk<'_> {
    /// `path` followed by `key`.
    fn child(&self, key: &str) -> String {
        let simple = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let key = if simple {
            key.to_owned()
        } else {
            format!("{key:?}")
        };
        if self.path.is_empty() {
            key
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Where the object is, for messages.
    fn place(&self) -> String {
        if self.path.is_empty() {
            "the top-level object".to_owned()
        } else {
            self.path.to_owned()
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!(
                    "duplicate key {key:?} in {} ({path}): a key is written once per object; \
                     remove one of the two",
                    self.place()
                )));
            }
            map.next_value_seed(Walk { path: &path })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0usize;
        loop {
            let path = format!("{}[{n}]", self.path);
            if seq.next_element_seed(Walk { path: &path })?.is_none() {
                return Ok(());
            }
            n += 1;
        }
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::{Policy, PolicyFormat};

    fn refused(text: &str) -> String {
        Policy::parse(text, PolicyFormat::Json).expect_err("a duplicate key is refused")
    }

    #[test]
    fn a_key_written_twice_is_an_error_naming_it_and_where() {
        let err = refused(r#"{"plugins":{"hello":{"enabled":false,"enabled":true}}}"#);
        assert!(err.contains("duplicate key \"enabled\""), "{err}");
        assert!(err.contains("in plugins.hello"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = refused("{\"host\":{},\n\"host\":{}}");
        assert!(err.contains("\"host\" in the top-level object"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn duplicates_are_found_at_any_depth_and_inside_arrays() {
        let err = refused(r#"{"plugins":{"hello":{"config":{"a":{"b":1,"b":2}}}}}"#);
        assert!(err.contains("\"b\" in plugins.hello.config.a"), "{err}");
        let err = refused(
            r#"{"plugins":{"hello":{"permissions":[{"actions":["x"],"callers":[],"callers":["*"]}]}}}"#,
        );
        assert!(
            err.contains("\"callers\" in plugins.hello.permissions[0]"),
            "{err}"
        );
        let err = refused(r#"{"plugins":{"a.b":{"x":1,"x":1}}}"#);
        assert!(err.contains("in plugins.\"a.b\""), "{err}");
    }

    #[test]
    fn the_same_key_in_different_objects_and_keys_differing_in_case_are_fine() {
        let policy = Policy::parse(
            r#"{"plugins":{"a":{"enabled":false},"b":{"enabled":false,"config":{"k":1,"K":2}}}}"#,
            PolicyFormat::Json,
        )
        .expect("valid");
        let b = policy.for_plugin(&airlock_abi::manifest::PluginId::new("b").expect("id"));
        assert_eq!(b.config["K"], 2);
    }

    #[test]
    fn malformed_json_is_reported_by_the_policy_reader() {
        let err = Policy::parse(r#"{"plugins":"#, PolicyFormat::Json).expect_err("malformed");
        assert!(err.contains("EOF"), "{err}");
    }
}

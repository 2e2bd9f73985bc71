//! Whom a permission rule covers: caller patterns (`*`, `host`, `user:<glob>`, `role:<role>`,
//! `attr:<name>=<glob>`, `plugin:<glob>`), matched against the thread's [`CallerInfo`].

use airlock_abi::manifest::glob_match;
use airlock_abi::wire::CallerInfo;

/// What a caller pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPattern {
    /// `*`: anyone.
    Anyone,
    /// `host`: the host program, on behalf of anyone or no one.
    Host,
    /// `user:<glob>`: the host program on behalf of a principal whose id matches.
    User(String),
    /// `role:<role>`: the host program on behalf of a principal with this role.
    Role(String),
    /// `attr:<name>=<glob>`: the host program on behalf of a principal whose attribute `name`
    /// has a value the glob matches (a principal without the attribute never matches).
    Attribute {
        /// The attribute's name (`org`).
        name: String,
        /// The glob its value must match (`acme`, `acme-*`).
        value: String,
    },
    /// `plugin:<glob>`: another plugin whose id matches.
    Plugin(String),
}

impl CallerPattern {
    /// Parses `*`, `host`, `user:<glob>`, `role:<role>`, `attr:<name>=<glob>` or
    /// `plugin:<glob>`.
    ///
    /// # Errors
    ///
    /// What the pattern should look like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let pattern = match text.split_once(':') {
            None if text == "*" => Self::Anyone,
            None if text == "host" => Self::Host,
            Some(("user", glob)) if !glob.is_empty() => Self::User(glob.to_owned()),
            Some(("role", role)) if !role.is_empty() => Self::Role(role.to_owned()),
            Some(("attr", pair)) => match pair.split_once('=') {
                Some((name, value)) if !name.is_empty() && !value.is_empty() => Self::Attribute {
                    name: name.to_owned(),
                    value: value.to_owned(),
                },
                _ => {
                    return Err(format!(
                        "caller {text:?}: an attribute pattern is \"attr:<name>=<value glob>\", \
                         as in \"attr:org=acme\""
                    ))
                }
            },
            Some(("plugin", glob)) if !glob.is_empty() => Self::Plugin(glob.to_owned()),
            _ => {
                return Err(format!(
                    "caller {text:?}: expected \"*\", \"host\", \"user:<id glob>\", \
                     \"role:<role>\", \"attr:<name>=<value glob>\" or \"plugin:<id glob>\""
                ))
            }
        };
        Ok(pattern)
    }

    /// Whether `caller` is one this pattern names.
    pub fn matches(&self, caller: &CallerInfo) -> bool {
        match (self, caller) {
            (Self::Anyone, _) | (Self::Host, CallerInfo::Host { .. }) => true,
            (Self::User(glob), CallerInfo::Host { principal: Some(p) }) => glob_match(glob, &p.id),
            (Self::Role(role), CallerInfo::Host { principal: Some(p) }) => p.has_role(role),
            (Self::Attribute { name, value }, CallerInfo::Host { principal: Some(p) }) => p
                .attribute(name)
                .is_some_and(|found| glob_match(value, found)),
            (Self::Plugin(glob), CallerInfo::Plugin { id, .. }) => glob_match(glob, id),
            _ => false,
        }
    }
}

impl std::fmt::Display for CallerPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anyone => f.write_str("*"),
            Self::Host => f.write_str("host"),
            Self::User(glob) => write!(f, "user:{glob}"),
            Self::Role(role) => write!(f, "role:{role}"),
            Self::Attribute { name, value } => write!(f, "attr:{name}={value}"),
            Self::Plugin(glob) => write!(f, "plugin:{glob}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_abi::wire::Principal;

    fn host(principal: Principal) -> CallerInfo {
        CallerInfo::Host {
            principal: Some(principal),
        }
    }

    #[test]
    fn caller_patterns_parse_and_refuse_what_they_do_not_know() {
        assert_eq!(CallerPattern::parse("*"), Ok(CallerPattern::Anyone));
        for text in ["user:a*", "attr:org=acme", "attr:org=acme-*", "attr:a=b=c"] {
            assert_eq!(
                CallerPattern::parse(text).map(|p| p.to_string()),
                Ok(text.to_owned())
            );
        }
        for bad in [
            "",
            "admin",
            "role:",
            "group:x",
            "plugin",
            "attr:",
            "attr:org",
            "attr:=x",
            "attr:org=",
        ] {
            assert!(CallerPattern::parse(bad).is_err(), "{bad:?}");
        }
        let a_star = CallerPattern::parse("user:a*").expect("p");
        assert!(a_star.matches(&host(Principal::new("ada", &[]))));
        assert!(!a_star.matches(&host(Principal::new("bob", &[]))));
        assert!(!CallerPattern::parse("host")
            .expect("p")
            .matches(&CallerInfo::Plugin {
                id: "x".into(),
                generation: 1
            }));
    }

    #[test]
    fn an_attribute_pattern_matches_the_value_of_that_attribute_only() {
        let acme = CallerPattern::parse("attr:org=acme").expect("p");
        let ada = Principal::new("ada", &[]);
        assert!(acme.matches(&host(ada.clone().with_attribute("org", "acme"))));
        for other in [
            ada.clone().with_attribute("org", "acme-evil"),
            ada.clone().with_attribute("org", "Acme"),
            ada.clone().with_attribute("tenant", "acme"),
            // Roles and ids are not attributes.
            Principal::new("acme", &["acme"]),
        ] {
            assert!(!acme.matches(&host(other.clone())), "{other:?}");
        }
        assert!(!acme.matches(&CallerInfo::Host { principal: None }));
        assert!(!acme.matches(&CallerInfo::Plugin {
            id: "acme".into(),
            generation: 1
        }));
        let glob = CallerPattern::parse("attr:org=acme-*").expect("p");
        assert!(glob.matches(&host(ada.with_attribute("org", "acme-eu"))));
    }
}

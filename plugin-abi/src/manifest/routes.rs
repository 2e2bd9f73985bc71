//! A route's path pattern (`/items/{id}`, `/files/{*rest}`) and who may call it (`auth`):
//! parsed and checked here once, for the manifest's validation and for the host's matching.

use serde::{Deserialize, Serialize};

/// The longest path a route may declare.
pub const MAX_ROUTE_PATH: usize = 256;

/// One segment of a route's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Matches this text exactly (after percent-decoding the request's segment).
    Exact(&'a str),
    /// `{name}`: matches one non-empty segment, handed to the plugin as a parameter.
    Param(&'a str),
    /// `{*name}`: the last segment only; matches one or more non-empty segments, joined by `/`.
    Rest(&'a str),
}

impl Segment<'_> {
    /// How specific the segment is: an exact segment wins over a parameter, which wins over the
    /// wildcard (lower is more specific).
    pub const fn rank(self) -> u8 {
        match self {
            Self::Exact(_) => 0,
            Self::Param(_) => 1,
            Self::Rest(_) => 2,
        }
    }
}

/// A route's path, parsed: `/` then segments separated by `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern<'a> {
    segments: Vec<Segment<'a>>,
}

impl<'a> RoutePattern<'a> {
    /// Parses a route's declared path.
    ///
    /// # Errors
    ///
    /// Why the path is not one: it must start with `/`, hold at most 256 characters; an exact
    /// segment holds only `a-z A-Z 0-9 - _ . ~` and is not `.` or `..`; a parameter takes a
    /// whole segment, `{name}`, with a name of `a-z A-Z 0-9 _` not starting with a digit and
    /// used once; the wildcard `{*name}` may only be the last segment.
    pub fn parse(path: &'a str) -> Result<Self, String> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err("the path must start with /".to_owned());
        };
        if path.len() > MAX_ROUTE_PATH {
            return Err(format!(
                "the path is longer than {MAX_ROUTE_PATH} characters"
            ));
        }
        let mut segments = Vec::new();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = segment(part)?;
            if let Segment::Param(name) | Segment::Rest(name) = segment {
                let taken = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::Rest(n) if *n == name));
                if taken {
                    return Err(format!("the parameter {name:?} is named twice"));
                }
            }
            if matches!(segment, Segment::Rest(_)) && i + 1 != parts.len() {
                return Err(format!(
                    "the wildcard {part} must be the last segment of the path"
                ));
            }
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment<'a>] {
        &self.segments
    }

    /// The pattern with its parameters' names left out: two routes of one method with the same
    /// shape would match the same requests (`/items/{id}` and `/items/{key}`).
    pub fn shape(&self) -> String {
        let mut shape = String::new();
        for segment in &self.segments {
            shape.push('/');
            match segment {
                Segment::Exact(text) => shape.push_str(text),
                Segment::Param(_) => shape.push_str("{}"),
                Segment::Rest(_) => shape.push_str("{*}"),
            }
        }
        shape
    }
}

fn segment(part: &str) -> Result<Segment<'_>, String> {
    let Some(inner) = part.strip_prefix('{') else {
        let literal = part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
        if !literal || part == "." || part == ".." {
            return Err(format!(
                "the segment {part:?} must be a parameter {{name}}, a wildcard {{*name}} or \
                 a-z A-Z 0-9 - _ . ~ (not . or ..)"
            ));
        }
        return Ok(Segment::Exact(part));
    };
    let Some(inner) = inner.strip_suffix('}') else {
        return Err(format!(
            "the segment {part:?}: a parameter takes the whole segment, {{name}}"
        ));
    };
    let (wildcard, name) = match inner.strip_prefix('*') {
        Some(name) => (true, name),
        None => (false, inner),
    };
    let identifier = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return Err(format!(
            "the parameter name {name:?} must be 1 to 64 characters of a-z A-Z 0-9 _, \
             not starting with a digit"
        ));
    }
    Ok(if wildcard {
        Segment::Rest(name)
    } else {
        Segment::Param(name)
    })
}

/// Who may call a route: the host program's authentication (the default), or anyone holding a
/// signature made with a secret the operator provides.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    /// `"host"`: the program's authentication hook decides, as for every route.
    #[default]
    Host,
    /// `{"public": {...}}`: the hook is skipped; the request must carry a valid signature.
    Public(PublicRoute),
}

impl RouteAuth {
    /// Whether this is the default, [`RouteAuth::Host`].
    pub fn is_host(&self) -> bool {
        matches!(self, Self::Host)
    }
}

/// A public route's signature: which scheme, made with which of the operator's secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicRoute {
    /// How the sender signs its requests.
    pub scheme: SignatureScheme,
    /// The name of the secret in the operator's `[secrets]`; the plugin declares
    /// `secrets:<name>`, and the operator must grant it.
    pub secret: String,
    /// `generic` only: the header carrying the signature (hex or base64 of HMAC-SHA256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `generic` only: a header carrying the request's Unix time in seconds, signed with the
    /// body as `<timestamp>.<body>` and accepted within five minutes of the host's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
}

/// How a public route's sender signs its requests; every scheme is HMAC-SHA256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    /// GitHub's: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`, and `X-GitHub-Delivery`.
    Github,
    /// Slack's: `X-Slack-Signature: v0=<hex HMAC of "v0:<timestamp>:<body>">` with
    /// `X-Slack-Request-Timestamp`.
    Slack,
    /// A header the route names, carrying hex or base64 of the HMAC of the body (or of
    /// `<timestamp>.<body>` with a timestamp header).
    Generic,
}

impl SignatureScheme {
    /// The name used in manifests.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Slack => "slack",
            Self::Generic => "generic",
        }
    }
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_into_segments() {
        let p = RoutePattern::parse("/items/{id}/files/{*rest}").expect("valid");
        assert_eq!(
            p.segments(),
            [
                Segment::Exact("items"),
                Segment::Param("id"),
                Segment::Exact("files"),
                Segment::Rest("rest"),
            ]
        );
        assert_eq!(p.shape(), "/items/{}/files/{*}");
        assert_eq!(
            RoutePattern::parse("/").expect("root").segments(),
            [Segment::Exact("")]
        );
        for (bad, says) in [
            ("items", "start with /"),
            ("/{*rest}/more", "last segment"),
            ("/{id}/{id}", "named twice"),
            ("/{id}/{*id}", "named twice"),
            ("/file-{id}", "must be a parameter"),
            ("/{id}.txt", "whole segment"),
            ("/{1d}", "not starting with a digit"),
            ("/{}", "parameter name"),
            ("/{a-b}", "parameter name"),
            ("/a/../b", "not . or .."),
            ("/a/%2F", "must be a parameter"),
        ] {
            let err = RoutePattern::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn an_exact_segment_ranks_before_a_parameter_before_the_wildcard() {
        assert!(Segment::Exact("a").rank() < Segment::Param("a").rank());
        assert!(Segment::Param("a").rank() < Segment::Rest("a").rank());
    }
}

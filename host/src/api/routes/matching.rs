//! Which declared route a request's path reaches, and its parameters: an exact segment wins
//! over a parameter, which wins over the wildcard, segment by segment from the left; a path
//! holding a `.` or `..` segment, or a parameter that decodes to `/`, NUL or bytes that are not
//! UTF-8, is refused (`400`) rather than handed to a plugin.

use airlock_abi::manifest::{RouteDecl, RoutePattern, Segment};

/// What a path reaches among a plugin's routes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The route (its index among the plugin's) and its parameters, decoded, in the order of
    /// its path.
    Found(usize, Vec<(String, String)>),
    /// No route of this method matches.
    NotFound,
    /// The path is refused: why.
    Bad(String),
}

/// A request path's segment: as written, and percent-decoded (or why it does not decode).
struct Part<'p> {
    raw: &'p str,
    decoded: Result<String, &'static str>,
}

/// The route of `routes` that `method` and `path` (under the plugin's prefix, starting with
/// `/`, still percent-encoded) reach.
pub(super) fn find(routes: &[RouteDecl], method: &str, path: &str) -> Lookup {
    let parts: Vec<Part<'_>> = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|raw| Part {
            raw,
            decoded: percent_decode(raw),
        })
        .collect();
    let dots = |p: &Part<'_>| {
        matches!(p.raw, "." | "..") || matches!(p.decoded.as_deref(), Ok("." | ".."))
    };
    if parts.iter().any(dots) {
        return Lookup::Bad("the path holds a . or .. segment".to_owned());
    }
    let mut best: Option<(Vec<u8>, usize, RoutePattern<'_>)> = None;
    for (index, route) in routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method.eq_ignore_ascii_case(method))
    {
        // Validated with the manifest: a pattern that does not parse matches nothing.
        let Ok(pattern) = RoutePattern::parse(&route.path) else {
            continue;
        };
        let Some(rank) = rank(&pattern, &parts) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _, _)| rank < *b) {
            best = Some((rank, index, pattern));
        }
    }
    let Some((_, index, pattern)) = best else {
        return Lookup::NotFound;
    };
    match params(&pattern, &parts) {
        Ok(params) => Lookup::Found(index, params),
        Err(why) => Lookup::Bad(why),
    }
}

/// How specifically `pattern` matches the path's parts (each segment's rank), or `None`.
fn rank(pattern: &RoutePattern<'_>, parts: &[Part<'_>]) -> Option<Vec<u8>> {
    let segments = pattern.segments();
    let mut ranks = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let matched = match segment {
            Segment::Exact(text) => parts
                .get(i)
                .is_some_and(|p| p.decoded.as_deref() == Ok(*text)),
            Segment::Param(_) => parts.get(i).is_some_and(|p| !p.raw.is_empty()),
            Segment::Rest(_) => {
                let rest = parts.get(i..).unwrap_or_default();
                !rest.is_empty() && rest.iter().all(|p| !p.raw.is_empty())
            }
        };
        if !matched {
            return None;
        }
        ranks.push(segment.rank());
    }
    let consumed =
        matches!(segments.last(), Some(Segment::Rest(_))) || segments.len() == parts.len();
    consumed.then_some(ranks)
}

/// The parameters of a pattern that matched, decoded and checked.
fn params(pattern: &RoutePattern<'_>, parts: &[Part<'_>]) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    for (i, segment) in pattern.segments().iter().enumerate() {
        let (name, taken) = match segment {
            Segment::Exact(_) => continue,
            Segment::Param(name) => (name, parts.get(i..=i).unwrap_or_default()),
            Segment::Rest(name) => (name, parts.get(i..).unwrap_or_default()),
        };
        let mut values = Vec::with_capacity(taken.len());
        for part in taken {
            let value = part
                .decoded
                .as_ref()
                .map_err(|why| format!("the parameter {name}: {why}"))?;
            if value.contains(['/', '\0']) {
                return Err(format!(
                    "the parameter {name} decodes to a / or a NUL, which no segment may hold"
                ));
            }
            values.push(value.as_str());
        }
        params.push(((*name).to_owned(), values.join("/")));
    }
    Ok(params)
}

/// A path segment with its `%XX` escapes decoded (`+` stays a plus: this is a path, not a form).
fn percent_decode(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let digit = |at: usize| {
                bytes
                    .get(at)
                    .and_then(|b| char::from(*b).to_digit(16))
                    .ok_or("a malformed %-escape")
            };
            let byte = digit(i + 1)? * 16 + digit(i + 2)?;
            out.push(u8::try_from(byte).map_err(|_| "a malformed %-escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "it decodes to bytes that are not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, path: &str) -> RouteDecl {
        RouteDecl {
            method: method.to_owned(),
            path: path.to_owned(),
            action: Some(path.to_owned()),
            description: String::new(),
            auth: airlock_abi::manifest::RouteAuth::Host,
        }
    }

    fn reached(
        routes: &[RouteDecl],
        method: &str,
        path: &str,
    ) -> Result<(String, Vec<(String, String)>), String> {
        match find(routes, method, path) {
            Lookup::Found(index, params) => Ok((routes[index].path.clone(), params)),
            Lookup::NotFound => Err("404".to_owned()),
            Lookup::Bad(why) => Err(format!("400 {why}")),
        }
    }

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn exact_segments_win_over_parameters_and_parameters_over_the_wildcard() {
        let routes = [
            route("GET", "/files/{*rest}"),
            route("GET", "/items/{id}"),
            route("GET", "/items/special"),
            route("GET", "/{section}/special"),
            route("GET", "/"),
        ];
        let found = |path| reached(&routes, "GET", path);
        assert_eq!(
            found("/items/special"),
            Ok(("/items/special".to_owned(), vec![]))
        );
        assert_eq!(
            found("/items/a%20b"),
            Ok(("/items/{id}".to_owned(), p(&[("id", "a b")])))
        );
        assert_eq!(
            found("/other/special"),
            Ok(("/{section}/special".to_owned(), p(&[("section", "other")])))
        );
        assert_eq!(
            found("/files/docs/a+b%C3%A9.txt"),
            Ok((
                "/files/{*rest}".to_owned(),
                p(&[("rest", "docs/a+b\u{e9}.txt")])
            ))
        );
        assert_eq!(found("/"), Ok(("/".to_owned(), vec![])));
        assert_eq!(
            found("/%69tems/special"),
            Ok(("/items/special".to_owned(), vec![]))
        );
        for missing in [
            "/items",
            "/items/",
            "/items/1/2",
            "/files",
            "/files/",
            "/files//etc",
        ] {
            assert_eq!(found(missing), Err("404".to_owned()), "{missing}");
        }
        assert_eq!(reached(&routes, "POST", "/items/1"), Err("404".to_owned()));
        assert_eq!(
            reached(&routes, "get", "/items/1").map(|r| r.0),
            Ok("/items/{id}".to_owned())
        );
    }

    #[test]
    fn dots_slashes_nul_and_bad_bytes_are_refused() {
        let routes = [route("GET", "/items/{id}"), route("GET", "/files/{*rest}")];
        for (path, says) in [
            ("/files/a/../b", ". or .."),
            ("/files/%2e%2E/b", ". or .."),
            ("/items/.", ". or .."),
            ("/items/a%2Fb", "a / or a NUL"),
            ("/files/a/b%00", "a / or a NUL"),
            ("/items/%FF", "not UTF-8"),
            ("/items/%zz", "malformed"),
            ("/items/%4", "malformed"),
        ] {
            let err = reached(&routes, "GET", path).expect_err(path);
            assert!(
                err.starts_with("400") && err.contains(says),
                "{path}: {err}"
            );
        }
    }
}

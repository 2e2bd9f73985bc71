//! The one `TryFrom` that turns a [`RawManifest`] into a [`Manifest`]: every rule a manifest
//! must keep, checked once.

use super::{
    covers, is_header_name, ActionDecl, Capability, CapabilityKind, DeclaredCapability, Manifest,
    ManifestError, PluginId, PublicRoute, RawCapability, RawManifest, RouteAuth, RouteDecl,
    RoutePattern, SignatureScheme, ROUTE_METHODS,
};

/// The most hooks, actions or capabilities one manifest may declare.
pub const MAX_DECLARATIONS: usize = 256;

impl TryFrom<RawManifest> for Manifest {
    type Error = ManifestError;

    fn try_from(raw: RawManifest) -> Result<Self, ManifestError> {
        let err = |msg: String| ManifestError(msg);
        let id = PluginId::new(&raw.id).map_err(err)?;
        let version = semver::Version::parse(&raw.version)
            .map_err(|e| err(format!("version {:?} is not semver: {e}", raw.version)))?;
        for (what, n) in [
            ("capabilities", raw.capabilities.len()),
            ("hooks", raw.hooks.len()),
            ("actions", raw.actions.len()),
            ("claims", raw.claims.len()),
            ("routes", raw.routes.len()),
            ("jobs", raw.jobs.len()),
            ("events", raw.events.len()),
            ("permissions", raw.permissions.len()),
        ] {
            if n > MAX_DECLARATIONS {
                return Err(err(format!(
                    "{n} {what} declared; at most {MAX_DECLARATIONS} are allowed"
                )));
            }
        }
        let mut capabilities: Vec<DeclaredCapability> = Vec::new();
        for raw_cap in raw.capabilities {
            let (name, required, reason) = match raw_cap {
                RawCapability::Name(name) => (name, false, None),
                RawCapability::Detailed {
                    name,
                    required,
                    reason,
                } => (name, required, reason),
            };
            let capability = Capability::parse(&name).map_err(err)?;
            if capabilities.iter().any(|c| c.capability == capability) {
                return Err(err(format!("capability {capability} is declared twice")));
            }
            capabilities.push(DeclaredCapability {
                capability,
                required,
                reason,
            });
        }
        check_names("action", raw.actions.iter().map(|a| a.name.as_str()))?;
        check_names("hook", raw.hooks.iter().map(|h| h.name.as_str()))?;
        check_names("claim", raw.claims.iter().map(|c| c.kind.as_str()))?;
        if let Some(claim) = raw
            .claims
            .iter()
            .find(|c| !raw.actions.iter().any(|a| a.name == c.action))
        {
            return Err(err(format!(
                "claim {:?} names action {:?}, which the manifest does not declare",
                claim.kind, claim.action
            )));
        }
        check_routes(&raw.routes, &raw.actions, &capabilities)?;
        for (what, schema) in raw
            .actions
            .iter()
            .flat_map(|a| {
                [
                    ("input_schema", &a.input_schema),
                    ("output_schema", &a.output_schema),
                ]
                .map(|(kind, s)| (format!("action {:?}'s {kind}", a.name), s))
            })
            .chain([("config_schema".to_owned(), &raw.config_schema)])
        {
            if let Some(s) = schema {
                if !(s.is_object() || s.is_boolean()) {
                    return Err(err(format!(
                        "{what} must be a JSON Schema: an object (or true/false)"
                    )));
                }
            }
        }
        check_names("job", raw.jobs.iter().map(|j| j.name.as_str()))?;
        if let Some(job) = raw
            .jobs
            .iter()
            .find(|j| j.cron.is_some() == j.every_ms.is_some())
        {
            return Err(err(format!(
                "job {:?} needs one of cron or every_ms",
                job.name
            )));
        }
        if !raw.jobs.is_empty()
            && !capabilities
                .iter()
                .any(|c| c.capability.kind() == CapabilityKind::Timers)
        {
            return Err(err(
                "jobs are declared, so the timers capability must be too".to_owned(),
            ));
        }
        super::events::check_events(&raw.events, &capabilities)?;
        super::resources::check_resources(&raw.resources)?;
        super::permissions::check_permissions(&raw.permissions, &raw.actions, &raw.hooks)?;
        let dependencies = super::dependencies::parse(&id, raw.depends_on)?;
        Ok(Self {
            id,
            version,
            description: raw.description,
            capabilities,
            hooks: raw.hooks,
            actions: raw.actions,
            concurrency: raw.concurrency,
            claims: raw.claims,
            routes: raw.routes,
            jobs: raw.jobs,
            config_schema: raw.config_schema,
            events: raw.events,
            resources: raw.resources,
            dependencies,
            permissions: raw.permissions,
        })
    }
}

pub(super) fn check_names<'a>(
    what: &str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ManifestError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(ManifestError(format!(
                "{what} name {name:?} must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' and '.'"
            )));
        }
        if !seen.insert(name) {
            return Err(ManifestError(format!("{what} {name:?} is declared twice")));
        }
    }
    Ok(())
}

fn check_routes(
    routes: &[RouteDecl],
    actions: &[ActionDecl],
    capabilities: &[DeclaredCapability],
) -> Result<(), ManifestError> {
    let mut seen: Vec<(&str, String, &str)> = Vec::new();
    for route in routes {
        let name = format!("route {} {}", route.method, route.path);
        if !ROUTE_METHODS.contains(&route.method.as_str()) {
            return Err(ManifestError(format!(
                "{name}: the method must be one of {}",
                ROUTE_METHODS.join(", ")
            )));
        }
        let pattern =
            RoutePattern::parse(&route.path).map_err(|e| ManifestError(format!("{name}: {e}")))?;
        let shape = pattern.shape();
        if let Some((_, _, other)) = seen
            .iter()
            .find(|(method, s, _)| *method == route.method && *s == shape)
        {
            let message = if *other == route.path {
                format!("{name} is declared twice")
            } else {
                format!(
                    "{name} is declared twice: it has the same shape as {} {other}, so both \
                     would match the same requests",
                    route.method
                )
            };
            return Err(ManifestError(message));
        }
        seen.push((&route.method, shape, &route.path));
        if let Some(action) = &route.action {
            let Some(declared) = actions.iter().find(|a| &a.name == action) else {
                return Err(ManifestError(format!(
                    "{name} names action {action:?}, which the manifest does not declare"
                )));
            };
            if declared.input_schema.is_some() {
                return Err(ManifestError(format!(
                    "{name}: action {action:?} serves a route, so it takes a request, not JSON: \
                     it cannot have an input_schema"
                )));
            }
        }
        if let RouteAuth::Public(public) = &route.auth {
            check_public(&name, public, capabilities)?;
        }
    }
    Ok(())
}

/// A public route names a secret the plugin declares (`secrets:<name>`), and the headers its
/// scheme needs.
fn check_public(
    name: &str,
    public: &PublicRoute,
    capabilities: &[DeclaredCapability],
) -> Result<(), ManifestError> {
    let err = |msg: String| Err(ManifestError(format!("{name}: {msg}")));
    check_names("secret", std::iter::once(public.secret.as_str()))
        .map_err(|e| ManifestError(format!("{name}: {e}")))?;
    let declared: Vec<Capability> = capabilities.iter().map(|c| c.capability.clone()).collect();
    if !covers(&declared, CapabilityKind::Secrets, Some(&public.secret)) {
        return err(format!(
            "a public route checks signatures with the secret {:?}, so the capability \
             secrets:{} must be declared (and the operator must grant it)",
            public.secret, public.secret
        ));
    }
    let headers = [&public.header, &public.timestamp_header];
    match public.scheme {
        SignatureScheme::Generic => {
            let Some(header) = &public.header else {
                return err(
                    "the generic scheme needs the header that carries the signature".to_owned(),
                );
            };
            if let Some(bad) = [Some(header), public.timestamp_header.as_ref()]
                .into_iter()
                .flatten()
                .find(|h| !is_header_name(h))
            {
                return err(format!("{bad:?} is not a header name"));
            }
        }
        scheme if headers.iter().any(|h| h.is_some()) => {
            return err(format!(
                "the {} scheme has its own headers: header and timestamp_header are for generic",
                scheme.name()
            ));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::manifest::{Manifest, RouteAuth, SignatureScheme};

    fn with_routes(capabilities: &str, routes: &str) -> Result<Manifest, String> {
        Manifest::from_json(&format!(
            r#"{{"id":"p","version":"1.0.0","capabilities":[{capabilities}],
                "actions":[{{"name":"a"}}],"routes":[{routes}]}}"#
        ))
        .map_err(|e| e.0)
    }

    #[test]
    fn routes_with_parameters_are_checked_by_shape() {
        let ok = with_routes(
            "",
            r#"{"method":"GET","path":"/items/{id}","action":"a"},
               {"method":"GET","path":"/items/special","action":"a"},
               {"method":"POST","path":"/items/{key}","action":"a"},
               {"method":"GET","path":"/files/{*rest}","action":"a"}"#,
        )
        .expect("valid");
        assert_eq!(ok.routes.len(), 4);
        let same = with_routes(
            "",
            r#"{"method":"GET","path":"/items/{id}"},{"method":"GET","path":"/items/{key}"}"#,
        )
        .expect_err("one shape twice");
        assert!(same.contains("same shape as GET /items/{id}"), "{same}");
        let late = with_routes("", r#"{"method":"GET","path":"/{*rest}/x"}"#).expect_err("late");
        assert!(late.contains("last segment"), "{late}");
    }

    #[test]
    fn a_public_route_names_a_declared_secret_and_its_schemes_headers() {
        let ok = with_routes(
            r#""secrets:hook""#,
            r#"{"method":"POST","path":"/gh","action":"a",
                "auth":{"public":{"scheme":"github","secret":"hook"}}},
               {"method":"POST","path":"/any","action":"a",
                "auth":{"public":{"scheme":"generic","secret":"hook","header":"X-Signature",
                                  "timestamp_header":"X-Timestamp"}}},
               {"method":"GET","path":"/private","action":"a","auth":"host"}"#,
        )
        .expect("valid");
        let RouteAuth::Public(public) = &ok.routes[0].auth else {
            panic!("public: {:?}", ok.routes[0].auth);
        };
        assert_eq!(public.scheme, SignatureScheme::Github);
        assert!(ok.routes[2].auth.is_host());
        for (capabilities, auth, says) in [
            (
                "",
                r#"{"scheme":"github","secret":"hook"}"#,
                "secrets:hook must be declared",
            ),
            (
                r#""secrets:other""#,
                r#"{"scheme":"slack","secret":"hook"}"#,
                "secrets:hook",
            ),
            (
                r#""secrets:hook""#,
                r#"{"scheme":"generic","secret":"hook"}"#,
                "needs the header",
            ),
            (
                r#""secrets:hook""#,
                r#"{"scheme":"generic","secret":"hook","header":"X Sig"}"#,
                "not a header name",
            ),
            (
                r#""secrets:hook""#,
                r#"{"scheme":"github","secret":"hook","header":"X-Sig"}"#,
                "has its own headers",
            ),
            (
                r#""secrets:*""#,
                r#"{"scheme":"github","secret":"a b"}"#,
                "secret name",
            ),
            (
                r#""secrets:hook""#,
                r#"{"scheme":"stripe","secret":"hook"}"#,
                "unknown variant",
            ),
        ] {
            let routes = format!(r#"{{"method":"POST","path":"/x","auth":{{"public":{auth}}}}}"#);
            let err = with_routes(capabilities, &routes).expect_err(auth);
            assert!(err.contains(says), "{auth}: {err}");
        }
    }
}

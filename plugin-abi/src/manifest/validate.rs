//! The one `TryFrom` that turns a [`RawManifest`] into a [`Manifest`]: every rule a manifest
//! must keep, checked once.

use super::{
    ActionDecl, Capability, CapabilityKind, DeclaredCapability, Manifest, ManifestError, PluginId,
    RawCapability, RawManifest, RouteDecl, ROUTE_METHODS,
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
            if capability.kind().is_reserved() {
                return Err(err(format!(
                    "capability {capability} is reserved to the host's own code; a plugin cannot declare it"
                )));
            }
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
        check_routes(&raw.routes, &raw.actions)?;
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
        })
    }
}

fn check_names<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), ManifestError> {
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

fn check_routes(routes: &[RouteDecl], actions: &[ActionDecl]) -> Result<(), ManifestError> {
    let mut seen = std::collections::BTreeSet::new();
    for route in routes {
        let name = format!("route {} {}", route.method, route.path);
        if !ROUTE_METHODS.contains(&route.method.as_str()) {
            return Err(ManifestError(format!(
                "{name}: the method must be one of {}",
                ROUTE_METHODS.join(", ")
            )));
        }
        let path_ok = route.path.starts_with('/')
            && route.path.len() <= 256
            && !route.path.split('/').any(|s| s == ".." || s == ".")
            && route
                .path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
        if !path_ok {
            return Err(ManifestError(format!(
                "{name}: the path must start with / and hold at most 256 of a-z A-Z 0-9 / - _ . ~, \
                 with no . or .. segment"
            )));
        }
        if !seen.insert((route.method.as_str(), route.path.as_str())) {
            return Err(ManifestError(format!("{name} is declared twice")));
        }
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
    }
    Ok(())
}

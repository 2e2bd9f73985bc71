//! Stage 3 over the whole set: the dependencies plugins declare (`depends_on`). A plugin whose
//! dependency is missing, refused, out of its range or on a cycle is refused, and so are the
//! plugins that need it, each saying why; what passes is created in dependency order (stable
//! with respect to discovery order for plugins that do not depend on each other) and torn down
//! in reverse.

use std::collections::VecDeque;
use std::path::PathBuf;

use airlock_abi::manifest::{Dependency, Manifest, PluginId};

use crate::error::{Refusal, RefusalReason};
use crate::library::file::LibraryFile;
use crate::pipeline::report::DependencyReport;
use crate::pipeline::Checked;

/// A plugin as the graph sees it: what it is, where it comes from, what it needs.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) id: PluginId,
    pub(crate) version: semver::Version,
    /// Its library file (or `builtin:<id>`), for messages.
    pub(crate) source: PathBuf,
    pub(crate) dependencies: Vec<Dependency>,
    /// `None` when it is running (or about to be); otherwise the state it is in (`disabled`…).
    pub(crate) idle: Option<String>,
}

impl Node {
    /// The node of a library stage 2 read.
    pub(crate) fn of(file: &LibraryFile) -> Self {
        Self::from_manifest(&file.manifest, file.path.clone())
    }

    pub(crate) fn from_manifest(manifest: &Manifest, source: PathBuf) -> Self {
        Self {
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            source,
            dependencies: manifest.dependencies.clone(),
            idle: None,
        }
    }

    /// `1.4.0 (path)`.
    fn found(&self) -> String {
        format!("{} ({})", self.version, self.source.display())
    }
}

/// What a dependency's id finds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Standing<'a> {
    /// A plugin that is (or will be) running.
    Present(&'a Node),
    /// A plugin that is loaded but not running (disabled, failed…).
    Idle(&'a Node, &'a str),
    /// A plugin that was refused, and why.
    Refused(RefusalReason),
    /// Nothing with that id.
    Absent,
}

/// "plugin c needs b ^2.0 (depends_on)".
fn needs(node: &Node, dep: &Dependency) -> String {
    let key = if dep.optional {
        "depends_on, optional"
    } else {
        "depends_on"
    };
    format!("plugin {} needs {} {} ({key})", node.id, dep.id, dep.range)
}

/// What is wrong with `node`'s dependencies, given what each id finds: the reason of the first
/// problem, and every problem in one message. `None` when every dependency is met.
pub(crate) fn unmet<'a>(
    node: &Node,
    lookup: &dyn Fn(&PluginId) -> Standing<'a>,
) -> Option<(RefusalReason, String)> {
    let mut problems: Vec<(RefusalReason, String)> = Vec::new();
    for dep in &node.dependencies {
        let standing = lookup(&dep.id);
        let problem = match standing {
            Standing::Present(found) | Standing::Idle(found, _) if !dep.accepts(&found.version) => {
                Some((
                    RefusalReason::DependencyVersion,
                    format!("{}, but {} is {}", needs(node, dep), dep.id, found.found()),
                ))
            }
            _ if dep.optional => None,
            Standing::Present(_) => None,
            Standing::Idle(_, state) => Some((
                RefusalReason::MissingDependency,
                format!(
                    "{}, but {} is {state}; enable it first",
                    needs(node, dep),
                    dep.id
                ),
            )),
            Standing::Refused(reason) => Some((
                RefusalReason::MissingDependency,
                format!(
                    "{}, but {} was refused ({reason}); fix {} first",
                    needs(node, dep),
                    dep.id,
                    dep.id
                ),
            )),
            Standing::Absent => Some((
                RefusalReason::MissingDependency,
                format!(
                    "{}, but no plugin {} is loaded or found; add its library to a plugin \
                     directory, or remove the dependency",
                    needs(node, dep),
                    dep.id
                ),
            )),
        };
        problems.extend(problem);
    }
    let reason = problems.first()?.0;
    let detail = problems
        .into_iter()
        .map(|(_, detail)| detail)
        .collect::<Vec<_>>()
        .join("; ");
    Some((reason, detail))
}

/// Which candidates the set refuses, by index: every unmet dependency, every cycle, and every
/// plugin that needs a refused one, until nothing changes. `candidates` are what passed the
/// other checks (`None`: refused already, with `refused` holding its id and reason); `loaded`
/// are plugins already in the host.
pub(crate) fn settle(
    candidates: &[Option<Node>],
    refused: &[(PluginId, RefusalReason)],
    loaded: &[Node],
) -> Vec<(usize, RefusalReason, String)> {
    let mut alive: Vec<Option<&Node>> = candidates.iter().map(Option::as_ref).collect();
    let mut refused = refused.to_vec();
    let mut out = Vec::new();
    loop {
        let lookup = |id: &PluginId| standing(id, &alive, loaded, &refused);
        let mut now: Vec<(usize, RefusalReason, String)> = alive
            .iter()
            .enumerate()
            .filter_map(|(i, node)| {
                let (reason, detail) = unmet((*node)?, &lookup)?;
                Some((i, reason, detail))
            })
            .collect();
        if now.is_empty() {
            now = cycles(&alive)
                .into_iter()
                .map(|(i, path)| {
                    let path: Vec<&str> = path.iter().map(PluginId::as_str).collect();
                    (
                        i,
                        RefusalReason::DependencyCycle,
                        format!(
                            "plugin {} is on a cycle of dependencies: {}; remove one of them \
                             from its depends_on",
                            path[0],
                            path.join(" -> ")
                        ),
                    )
                })
                .collect();
        }
        if now.is_empty() {
            return out;
        }
        for (i, reason, _) in &now {
            if let Some(node) = alive[*i].take() {
                refused.push((node.id.clone(), *reason));
            }
        }
        out.extend(now);
    }
}

fn standing<'a>(
    id: &PluginId,
    alive: &[Option<&'a Node>],
    loaded: &'a [Node],
    refused: &[(PluginId, RefusalReason)],
) -> Standing<'a> {
    if let Some(node) = alive.iter().flatten().find(|n| &n.id == id) {
        return Standing::Present(node);
    }
    if let Some(node) = loaded.iter().find(|n| &n.id == id) {
        return match &node.idle {
            None => Standing::Present(node),
            Some(state) => Standing::Idle(node, state),
        };
    }
    match refused.iter().rev().find(|(r, _)| r == id) {
        Some((_, reason)) => Standing::Refused(*reason),
        None => Standing::Absent,
    }
}

/// Every node on a cycle, with one cycle through it (`a, b, c, a`).
pub(crate) fn cycles(alive: &[Option<&Node>]) -> Vec<(usize, Vec<PluginId>)> {
    let index = |id: &PluginId| alive.iter().position(|n| n.is_some_and(|n| &n.id == id));
    let next = |i: usize| -> Vec<usize> {
        alive[i]
            .map(|n| n.dependencies.iter().filter_map(|d| index(&d.id)).collect())
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for (start, node) in alive.iter().enumerate() {
        let Some(node) = node else { continue };
        // Breadth first from `start`'s dependencies back to `start`: the shortest cycle.
        let mut from: Vec<Option<usize>> = vec![None; alive.len()];
        let mut queue: VecDeque<usize> = VecDeque::new();
        for j in next(start) {
            if from[j].is_none() {
                from[j] = Some(start);
                queue.push_back(j);
            }
        }
        while let Some(i) = queue.pop_front() {
            if i == start {
                break;
            }
            for j in next(i) {
                if from[j].is_none() {
                    from[j] = Some(i);
                    queue.push_back(j);
                }
            }
        }
        if from[start].is_none() {
            continue;
        }
        // Walk back from `start` to itself, then turn the walk round: `a -> b -> c -> a`.
        let mut path = vec![node.id.clone()];
        let mut at = from[start];
        while let Some(i) = at.filter(|i| *i != start) {
            path.extend(alive[i].map(|n| n.id.clone()));
            at = from[i];
        }
        path.push(node.id.clone());
        path.reverse();
        found.push((start, path));
    }
    found
}

/// A stable topological order: each item after the items with the ids it depends on, and
/// otherwise in the order given. Items without an id (refused ones) have no constraints; a
/// cycle (which [`settle`] refuses first) is broken at its first item.
pub(crate) fn order(items: &[Option<(&PluginId, &[Dependency])>]) -> Vec<usize> {
    let mut placed = vec![false; items.len()];
    let mut out = Vec::with_capacity(items.len());
    let waits = |i: usize, placed: &[bool]| {
        items[i].is_some_and(|(_, deps)| {
            deps.iter().any(|d| {
                items.iter().enumerate().any(|(j, other)| {
                    j != i && !placed[j] && other.is_some_and(|(id, _)| id == &d.id)
                })
            })
        })
    };
    while out.len() < items.len() {
        let next = (0..items.len())
            .find(|&i| !placed[i] && !waits(i, &placed))
            .or_else(|| (0..items.len()).find(|&i| !placed[i]));
        let Some(i) = next else { break };
        placed[i] = true;
        out.push(i);
    }
    out
}

/// Refuses, in `results`, what the set's dependencies refuse (see [`settle`]); `loaded` are
/// the plugins already in the host.
pub(crate) fn refuse_unmet(results: &mut [Result<Checked, Refusal>], loaded: &[Node]) {
    let candidates: Vec<Option<Node>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|c| Node::of(&c.file)))
        .collect();
    let refused: Vec<(PluginId, RefusalReason)> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter_map(|r| Some((r.id.clone()?, r.reason)))
        .collect();
    for (i, reason, detail) in settle(&candidates, &refused, loaded) {
        if let Ok(checked) = &results[i] {
            let refusal =
                Refusal::new(&checked.file.path, reason, detail).with_id(&checked.file.manifest.id);
            results[i] = Err(refusal);
        }
    }
}

/// `results` in dependency order (see [`order`]).
pub(crate) fn in_dependency_order<E>(results: Vec<Result<Checked, E>>) -> Vec<Result<Checked, E>> {
    let permutation = order(
        &results
            .iter()
            .map(|r| {
                r.as_ref()
                    .ok()
                    .map(|c| (&c.file.manifest.id, c.file.manifest.dependencies.as_slice()))
            })
            .collect::<Vec<_>>(),
    );
    let mut slots: Vec<Option<Result<Checked, E>>> = results.into_iter().map(Some).collect();
    permutation
        .into_iter()
        .filter_map(|i| slots[i].take())
        .collect()
}

/// Each dependency of `node` with its range and what satisfies it, for reports.
pub(crate) fn describe<'a>(
    node: &Node,
    lookup: &dyn Fn(&PluginId) -> Standing<'a>,
) -> Vec<DependencyReport> {
    node.dependencies
        .iter()
        .map(|dep| {
            let (found, satisfied) = match lookup(&dep.id) {
                Standing::Present(n) => (Some(n.found()), dep.accepts(&n.version)),
                Standing::Idle(n, state) => (
                    Some(format!("{} ({state})", n.found())),
                    dep.optional && dep.accepts(&n.version),
                ),
                Standing::Refused(reason) => (Some(format!("refused ({reason})")), dep.optional),
                Standing::Absent => (None, dep.optional),
            };
            DependencyReport {
                id: dep.id.to_string(),
                range: dep.range.to_string(),
                optional: dep.optional,
                found,
                satisfied,
            }
        })
        .collect()
}

/// Each passing entry's dependencies as [`describe`] shows them, given the whole set.
pub(crate) fn describe_all(
    results: &[Result<Checked, Refusal>],
    loaded: &[Node],
) -> Vec<Vec<DependencyReport>> {
    let alive: Vec<Option<Node>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|c| Node::of(&c.file)))
        .collect();
    let refs: Vec<Option<&Node>> = alive.iter().map(Option::as_ref).collect();
    let refused: Vec<(PluginId, RefusalReason)> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .filter_map(|r| Some((r.id.clone()?, r.reason)))
        .collect();
    let lookup = |id: &PluginId| standing(id, &refs, loaded, &refused);
    alive
        .iter()
        .map(|n| n.as_ref().map(|n| describe(n, &lookup)).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, version: &str, deps: &[(&str, &str, bool)]) -> Node {
        Node {
            id: PluginId::new(id).expect("id"),
            version: semver::Version::parse(version).expect("version"),
            source: PathBuf::from(format!("{id}.so")),
            dependencies: deps
                .iter()
                .map(|(id, range, optional)| Dependency {
                    id: PluginId::new(id).expect("id"),
                    range: semver::VersionReq::parse(range).expect("range"),
                    optional: *optional,
                })
                .collect(),
            idle: None,
        }
    }

    fn ordered(nodes: &[Node]) -> Vec<&str> {
        let items: Vec<_> = nodes
            .iter()
            .map(|n| Some((&n.id, n.dependencies.as_slice())))
            .collect();
        order(&items)
            .into_iter()
            .map(|i| nodes[i].id.as_str())
            .collect()
    }

    #[test]
    fn order_puts_dependencies_first_and_keeps_the_rest_in_place() {
        let nodes = [
            node("top", "1.0.0", &[("mid", "^1", false)]),
            node("x", "1.0.0", &[]),
            node("mid", "1.0.0", &[("base", "^1", false)]),
            node("y", "1.0.0", &[]),
            node("base", "1.0.0", &[]),
            node("z", "1.0.0", &[("absent", "*", true)]),
        ];
        assert_eq!(ordered(&nodes), ["x", "y", "base", "mid", "top", "z"]);
        let independent = [node("c", "1.0.0", &[]), node("a", "1.0.0", &[])];
        assert_eq!(ordered(&independent), ["c", "a"]);
    }

    #[test]
    fn unmet_dependencies_refuse_their_dependents_in_cascade() {
        let candidates = [
            Some(node("top", "1.0.0", &[("mid", "^1", false)])),
            Some(node("mid", "1.2.0", &[("base", "^2.0", false)])),
            Some(node("base", "1.4.0", &[])),
            Some(node("lone", "1.0.0", &[("gone", "^1", false)])),
            Some(node("easy", "1.0.0", &[("gone", "^1", true)])),
            Some(node("strict", "1.0.0", &[("base", ">=3", true)])),
        ];
        let refused = settle(&candidates, &[], &[]);
        let find = |i: usize| refused.iter().find(|(at, _, _)| *at == i);
        let (_, reason, detail) = find(1).expect("mid refused");
        assert_eq!(*reason, RefusalReason::DependencyVersion);
        assert_eq!(
            detail,
            "plugin mid needs base ^2.0 (depends_on), but base is 1.4.0 (base.so)"
        );
        let (_, reason, detail) = find(0).expect("top refused with mid");
        assert_eq!(*reason, RefusalReason::MissingDependency);
        assert!(
            detail.contains("needs mid ^1 (depends_on), but mid was refused (dependency_version)"),
            "{detail}"
        );
        assert_eq!(find(3).expect("lone").1, RefusalReason::MissingDependency);
        assert!(find(4).is_none(), "a missing optional dependency is fine");
        let (_, reason, detail) = find(5).expect("an optional one out of range");
        assert_eq!(*reason, RefusalReason::DependencyVersion);
        assert!(detail.contains("(depends_on, optional)"), "{detail}");
        assert!(find(2).is_none());
    }

    #[test]
    fn every_plugin_on_a_cycle_is_refused_naming_it_and_its_dependents_follow() {
        let candidates = [
            Some(node("a", "1.0.0", &[("b", "^1", false)])),
            Some(node("b", "1.0.0", &[("c", "^1", false)])),
            Some(node("c", "1.0.0", &[("a", "^1", false)])),
            Some(node("d", "1.0.0", &[("a", "^1", false)])),
            Some(node("e", "1.0.0", &[])),
        ];
        let refused = settle(&candidates, &[], &[]);
        let detail = |i: usize| {
            refused
                .iter()
                .find(|(at, _, _)| *at == i)
                .map(|(_, r, d)| (*r, d.clone()))
        };
        for (i, cycle) in [
            (0, "a -> b -> c -> a"),
            (1, "b -> c -> a -> b"),
            (2, "c -> a -> b -> c"),
        ] {
            let (reason, text) = detail(i).expect("on the cycle");
            assert_eq!(reason, RefusalReason::DependencyCycle);
            assert!(text.contains(cycle), "{text}");
        }
        let (reason, text) = detail(3).expect("d needs a");
        assert_eq!(reason, RefusalReason::MissingDependency);
        assert!(text.contains("a was refused (dependency_cycle)"), "{text}");
        assert!(detail(4).is_none());
    }

    #[test]
    fn loaded_plugins_and_earlier_refusals_count() {
        let mut idle = node("store", "1.0.0", &[]);
        idle.idle = Some("disabled".to_owned());
        let loaded = [node("base", "1.4.0", &[]), idle];
        let candidates = [
            Some(node("mid", "1.0.0", &[("base", "^1.4", false)])),
            Some(node("user", "1.0.0", &[("store", "^1", false)])),
            None,
            Some(node("signed", "1.0.0", &[("bad", "^1", false)])),
        ];
        let refused = [(
            PluginId::new("bad").expect("id"),
            RefusalReason::HashMismatch,
        )];
        let out = settle(&candidates, &refused, &loaded);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].2.contains("store is disabled"), "{out:?}");
        assert!(
            out[1].2.contains("bad was refused (hash_mismatch)"),
            "{out:?}"
        );
    }
}

//! Stages 1–3 composed once, for startup (`check`, `load`, `lock`) and reload alike: read what
//! discovery found, refuse duplicate ids, decide.

pub(crate) mod config;
pub(crate) mod decide;
pub(crate) mod graph;
mod parallel;
mod pin;
pub(crate) mod report;
pub(crate) mod schema;

pub use crate::library::discover::{check_plugin_dir, library_suffix};
pub use crate::library::file::{
    read_built_library, read_library, read_library_bytes, LibraryFile, Placement,
    DEFAULT_MAX_LIBRARY_SIZE,
};
pub use crate::library::lock::{Lock, LockEntry};
pub use crate::library::signature::{
    public_key_id, signature_path, SignatureStatus, SIGNATURE_SUFFIX,
};
pub use decide::effective_grants;
pub(crate) use parallel::parallel_map;
pub use pin::pin;
pub use report::{DependencyReport, LoadReport, PluginReport, Status};

use std::path::{Path, PathBuf};

use airlock_abi::manifest::PluginId;

use crate::error::{Error, Refusal, RefusalReason};
use crate::library::discover::{discover, Candidate};
use crate::loader;
use crate::pipeline::decide::{decide, Decision};
use crate::pipeline::schema::Schemas;
use crate::policy::Policy;

/// Options shared by checking and loading.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    /// Directories searched for libraries, in order.
    pub dirs: Vec<PathBuf>,
    /// The operator's policy.
    pub policy: Policy,
    /// Libraries larger than this are refused (`too_large`) without being read.
    pub max_library_size: u64,
    /// If set, only libraries pinned here load.
    pub lock: Option<Lock>,
}

impl PipelineOptions {
    /// Whether the policy or the lock pins `id` by SHA-256 (so stage 3 will hash it that way).
    fn pins_sha256(&self, id: &PluginId) -> bool {
        self.policy.for_plugin(id).sha256.is_some()
            || self
                .lock
                .as_ref()
                .and_then(|lock| lock.get(id))
                .is_some_and(|pin| pin.sha256.is_some())
    }

    /// Options for `dirs` with the default policy, no lock and the default size cap.
    pub fn new(dirs: Vec<PathBuf>) -> Self {
        Self {
            dirs,
            policy: Policy::default(),
            max_library_size: DEFAULT_MAX_LIBRARY_SIZE,
            lock: None,
        }
    }
}

/// A library that passed stages 1–3.
#[derive(Debug)]
pub struct Checked {
    /// What stage 2 read.
    pub file: LibraryFile,
    /// What stage 3 decided.
    pub decision: Decision,
    /// The manifest's schemas, compiled by stage 3 (which checks the config against them) and
    /// carried to the loaded plugin: compiled once per load.
    pub(crate) schemas: Option<Box<Schemas>>,
}

/// Runs stages 1–3 over every directory: nothing of any plugin runs. One entry per file, in
/// discovery order; a later file whose id an earlier one already has is refused (`duplicate_id`),
/// and the set's dependencies are checked (`missing_dependency`, `dependency_version`,
/// `dependency_cycle`).
///
/// # Errors
///
/// [`Error::PluginDir`] if a directory cannot be read.
pub fn check(options: &PipelineOptions) -> Result<Vec<Result<Checked, Refusal>>, Error> {
    let found = discover(&options.dirs, options.policy.host().trusted())?;
    let read = read_all(options, found, ReadFor::Checking);
    let mut results = decide_all(options, read, &[]);
    graph::refuse_unmet(&mut results, &[]);
    Ok(results)
}

/// What stage 2 reads a file for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFor {
    /// Stages 1–3 only (`check`, `lock`): nothing will be loaded.
    Checking,
    /// Startup: the sealed copy stage 4 opens is made right after reading ([`loader::seal`]);
    /// a library to be loaded in place is hashed in stage 4, unless a pin, a lock or a
    /// signature needs its identity in stage 3 (stage 4's `dlopen`s, which the dynamic linker
    /// serializes, then overlap with the hashing of the next libraries).
    Loading,
    /// A reload: as for startup, but the identity is computed in stage 2 (an unchanged file is
    /// skipped by it).
    Reloading,
}

/// Stage 2 for what stage 1 found, spread over the cores (reading and hashing are independent
/// per file); results in input order. A file that a SHA-256 pin (policy or lock) will be
/// checked against gets that hash here too, on the same core. When `purpose` is loading, each
/// file's sealed copy is made while its bytes are still in the cache, and the bytes released.
pub(super) fn read_all(
    options: &PipelineOptions,
    candidates: Vec<Result<Candidate, Refusal>>,
    purpose: ReadFor,
) -> Vec<Result<LibraryFile, Refusal>> {
    parallel_map(candidates, |candidate| {
        let mut file = candidate.and_then(|c| read_one(options, &c, purpose))?;
        if options.pins_sha256(&file.manifest.id) {
            let _ = file.sha256();
        }
        // An isolated plugin's bytes stay in memory: its workers load them, never this host.
        let isolated = options.policy.for_plugin(&file.manifest.id).isolation
            == crate::policy::Isolation::Process;
        match purpose {
            ReadFor::Loading if !isolated => loader::seal(&mut file),
            // Nothing is loaded (or `Host::load_checked` loads the bytes it checked): the
            // placement says what a load would do, and no descriptor is held.
            _ => file.close_descriptor(),
        }
        Ok(file)
    })
}

/// Stages 2 and 3 for one file wherever it is (an install's source, not a plugin directory:
/// stage 1's rules are the destination's): nothing of it runs. Other plugins' ids and claims
/// are not looked at.
///
/// # Errors
///
/// The refusal, with its reason code.
pub fn check_file(options: &PipelineOptions, path: &Path) -> Result<Checked, Refusal> {
    let mut file = read_library(path, path, options.max_library_size)?;
    file.examine_signature(options.policy.trust());
    decide_checked(options, file)
}

/// Stage 2 for one file: reads it, and checks the publisher's signature beside it on the bytes
/// read, with the keys the policy trusts (stage 3 decides what the finding means).
/// For a load, a library that may be loaded in place is mapped rather than read (unless the
/// policy asks for sealed copies; an isolated plugin's id is known only once it is read, and
/// its bytes are then read again), and hashed only once its identity is needed.
pub(super) fn read_one(
    options: &PipelineOptions,
    c: &Candidate,
    purpose: ReadFor,
) -> Result<LibraryFile, Refusal> {
    let map = (purpose != ReadFor::Checking && !options.policy.host().always_seal)
        .then_some(loader::MAPPER)
        .flatten();
    let mut file = crate::library::file::read_library_as(
        &c.file,
        &c.open,
        options.max_library_size,
        map,
        crate::library::file::Platforms::This,
    )?;
    file.examine_signature(options.policy.trust());
    let policy = options.policy.for_plugin(&file.manifest.id);
    let identity_now = purpose != ReadFor::Loading
        || options.lock.is_some()
        || policy.blake3.is_some()
        || policy.sha256.is_some()
        || policy.signature.required()
        || file.signature != crate::library::signature::SignatureStatus::Unsigned;
    if identity_now {
        file.identify();
    }
    if policy.isolation == crate::policy::Isolation::Process {
        if file.bytes.is_mapped() {
            crate::loader::reread(&mut file)?;
        }
        file.seal_instead(
            "isolated: its worker process loads its own sealed copy of the checked bytes"
                .to_owned(),
        );
    } else if options.policy.host().always_seal {
        file.seal_instead("the policy asks for sealed copies ([host] always_seal)".to_owned());
    }
    Ok(file)
}

/// What another plugin already holds: its id, from which file, and the kinds of request it
/// claims.
#[derive(Debug, Clone)]
pub(super) struct Taken {
    pub(super) id: PluginId,
    pub(super) path: PathBuf,
    pub(super) claims: Vec<String>,
}

impl Taken {
    /// What `file` holds once it passes, or just its id when `passed` is false.
    pub(super) fn of(file: &LibraryFile, passed: bool) -> Self {
        let claims = file.manifest.claims.iter().map(|c| c.kind.clone());
        Self {
            id: file.manifest.id.clone(),
            path: file.path.clone(),
            claims: if passed { claims.collect() } else { Vec::new() },
        }
    }
}

/// Stage 3 for what stage 2 read, in order. The one composition that startup (`check`, `load`,
/// `lock`, `validate`) and reload share: a file whose id another file already provides — a
/// loaded one (`taken`) or an earlier one here — is refused `duplicate_id`, one claiming a kind
/// of request another holds `claim_conflict`; the rest are decided.
pub(super) fn decide_all(
    options: &PipelineOptions,
    files: Vec<Result<LibraryFile, Refusal>>,
    taken: &[Taken],
) -> Vec<Result<Checked, Refusal>> {
    let mut seen = taken.to_vec();
    files
        .into_iter()
        .map(|file| {
            file.and_then(|file| {
                refuse_taken(&file, &seen)?;
                // The id is taken even if the policy then refuses the file: a second file with
                // it is a duplicate either way. Its claims hold only if it passes.
                seen.push(Taken::of(&file, false));
                let checked = decide_checked(options, file)?;
                if let Some(last) = seen.last_mut() {
                    *last = Taken::of(&checked.file, true);
                }
                Ok(checked)
            })
        })
        .collect()
}

/// `duplicate_id` if another file in `taken` provides `file`'s id; `claim_conflict` if another
/// plugin there holds a kind of request `file` claims.
pub(super) fn refuse_taken(file: &LibraryFile, taken: &[Taken]) -> Result<(), Refusal> {
    let id = &file.manifest.id;
    if let Some(first) = taken.iter().find(|t| &t.id == id) {
        return Err(Refusal::new(
            &file.path,
            RefusalReason::DuplicateId,
            format!(
                "plugin id {id} is already provided by {}; remove one of the two files",
                first.path.display()
            ),
        )
        .with_id(id));
    }
    for claim in &file.manifest.claims {
        if let Some(holder) = taken.iter().find(|t| t.claims.contains(&claim.kind)) {
            return Err(Refusal::new(
                &file.path,
                RefusalReason::ClaimConflict,
                format!(
                    "plugin {id} claims {:?}, which plugin {} ({}) already holds; one kind of \
                     request has one handler: remove one of the two plugins, or the claim from \
                     one manifest",
                    claim.kind,
                    holder.id,
                    holder.path.display()
                ),
            )
            .with_id(id));
        }
    }
    Ok(())
}

/// Stage 3's policy and version checks for one file.
pub(super) fn decide_checked(
    options: &PipelineOptions,
    file: LibraryFile,
) -> Result<Checked, Refusal> {
    let decision = decide(&file, &options.policy, options.lock.as_ref())?;
    // The manifest's schemas compile, and the policy's config fits its schema.
    let refuse =
        |reason, detail| Refusal::new(&file.path, reason, detail).with_id(&file.manifest.id);
    let schemas = Schemas::compile(&file.manifest)
        .map_err(|detail| refuse(RefusalReason::BadManifest, detail))?;
    config::prepare(
        &file.manifest,
        schemas.as_ref(),
        &decision.policy.config,
        &decision.grants,
        &options.policy,
    )
    .map_err(|errors| {
        let id = &file.manifest.id;
        let detail = errors.join("; ");
        refuse(
            RefusalReason::ConfigInvalid,
            format!("{detail}; fix [plugins.{id}.config] in the policy"),
        )
    })?;
    Ok(Checked {
        file,
        decision,
        schemas: schemas.map(Box::new),
    })
}

/// Whether two paths name the same file (as written, or once resolved).
pub(super) fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// Stages 1–3 as a report.
///
/// # Errors
///
/// [`Error::PluginDir`] if a directory cannot be read.
pub fn check_report(options: &PipelineOptions) -> Result<LoadReport, Error> {
    // What this system's workers can enforce, once per distinct sandbox.
    let mut probes: Vec<(crate::policy::Sandbox, Result<String, String>)> = Vec::new();
    let program = crate::isolation::find_worker(options.policy.host().worker.as_deref());
    let mut plugins = Vec::new();
    let checked = check(options)?;
    let mut graph = graph::describe_all(&checked, &[]).into_iter();
    for checked in checked {
        let dependencies = graph.next().unwrap_or_default();
        let c = match checked {
            Ok(c) => c,
            Err(refusal) => {
                plugins.push(PluginReport::refused(&refusal, None));
                continue;
            }
        };
        let policy = options.policy.for_plugin(&c.file.manifest.id);
        if policy.isolation != crate::policy::Isolation::Process {
            let mut report = ok_report(&c.file, "passed stages 1-3 (not loaded)".to_owned());
            report.dependencies = dependencies;
            report.warnings.clone_from(&c.decision.warnings);
            plugins.push(report);
            continue;
        }
        let index = match probes.iter().position(|(s, _)| *s == policy.sandbox) {
            Some(index) => index,
            None => {
                let probed = crate::isolation::probe(&program, &policy.sandbox);
                probes.push((policy.sandbox.clone(), probed));
                probes.len() - 1
            }
        };
        plugins.push(match &probes[index].1 {
            Ok(status) => PluginReport {
                dependencies,
                warnings: c.decision.warnings.clone(),
                ..ok_report(
                    &c.file,
                    format!("passed stages 1-3 (not loaded); its worker here: {status}"),
                )
            },
            Err(message) => {
                let refusal = Refusal::new(
                    &c.file.path,
                    RefusalReason::LoadFailed,
                    format!("in its worker process: {message}"),
                )
                .with_id(&c.file.manifest.id);
                PluginReport::refused(&refusal, None)
            }
        });
    }
    Ok(LoadReport { plugins })
}

pub(super) fn ok_report(file: &LibraryFile, detail: String) -> PluginReport {
    // Who signed it, when it is signed.
    let detail = match &file.signature {
        crate::library::signature::SignatureStatus::Unsigned => detail,
        signed => format!("{detail}; {signed}"),
    };
    // Where its code is (or would be) mapped from, for a library file.
    let placement = (!file.is_builtin()).then(|| file.placement().clone());
    PluginReport {
        file: file.path.clone(),
        id: Some(file.manifest.id.to_string()),
        version: Some(file.manifest.version.to_string()),
        status: Status::Ok,
        reason: None,
        detail,
        dependencies: Vec::new(),
        warnings: Vec::new(),
        placement,
    }
}

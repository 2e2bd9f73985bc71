//! The errors of the `airlock` crate: why a library was refused (with its stable reason code),
//! why a call failed, and why the host itself could not be set up.

use std::fmt;
use std::path::PathBuf;

use airlock_abi::manifest::PluginId;
use serde::Serialize;

/// The stable codes a call can fail with, the same for every caller. `busy` is the one a
/// `serial` plugin's gate gives: the call waited for the call inside the plugin as long as it
/// could (its own timeout, or what is left of the call it is nested in), or its wait would have
/// closed a cycle with another thread's; it did not run, and it is not a fault.
pub use airlock_abi::CallErrorCode;

/// Why a library was refused. Each reason has a stable code, reported by
/// `airlock check --format json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// Stage 1: the file or its directory is writable by every user, writable by a group the
    /// policy does not trust, or owned by a user other than the host's, root or a trusted
    /// owner (Unix); or a symlink leaves the plugin directory.
    UnsafePermissions,
    /// Stage 2: not a shared library for this platform (or not a regular file).
    NotALibrary,
    /// Stage 2: larger than the configured size cap; not read.
    TooLarge,
    /// Stage 2: the file is cut short (a header, segment or section lies past its end).
    Truncated,
    /// Stage 2: no manifest block: not built with `export_plugin!`.
    NoManifest,
    /// Stage 2 (or 4): the manifest block or plugin.json is malformed, or the loaded library
    /// reports a different manifest than its file holds.
    BadManifest,
    /// Stage 3: built against an airlock-abi version this host cannot serve.
    AbiIncompatible,
    /// Stage 3: built for another target, architecture or panic strategy.
    BuildMismatch,
    /// Stage 3: another file already provides this plugin id.
    DuplicateId,
    /// Stage 3: the operator's policy disables the plugin.
    Disabled,
    /// Stage 3: the file's hash (BLAKE3, or SHA-256 for older pins) differs from the operator's pin.
    HashMismatch,
    /// Stage 3: the policy requires a signature and there is none beside the library.
    Unsigned,
    /// Stage 3: the signature beside the library does not verify (the library or the signature
    /// was changed, or it signs another file), or cannot be read.
    BadSignature,
    /// Stage 3: signed by a key the policy does not trust, or not by the publisher it names.
    UntrustedSigner,
    /// Stage 3: a capability the manifest marks required is not granted.
    NotGranted,
    /// Stage 3: the manifest claims a kind of request another plugin already holds.
    ClaimConflict,
    /// Stage 5: the plugin's `validate_config` rejected the operator's config.
    ConfigInvalid,
    /// Stage 4: the dynamic linker refused the library (e.g. an undefined symbol).
    LoadFailed,
    /// Stage 4: abi_stable's layout check of the root module failed.
    LayoutMismatch,
    /// Stage 5: the plugin's `create` returned an error.
    InitFailed,
    /// Stage 5: the plugin's `create` panicked.
    InitPanicked,
    /// Stage 5: the plugin's `create` overran its deadline.
    InitTimeout,
    /// Stage 3, over the whole set: a plugin it depends on (`depends_on`, not optional) is not
    /// there, or was refused itself (the detail names it and its reason).
    MissingDependency,
    /// Stage 3, over the whole set: a plugin it depends on is there at a version outside its
    /// range; or, on a reload, the new build falls outside the range a loaded dependent needs.
    DependencyVersion,
    /// Stage 3, over the whole set: it is on a cycle of dependencies (the detail names it).
    DependencyCycle,
}

impl RefusalReason {
    /// Every reason, in pipeline order.
    pub const ALL: [Self; 25] = [
        Self::UnsafePermissions,
        Self::NotALibrary,
        Self::TooLarge,
        Self::Truncated,
        Self::NoManifest,
        Self::BadManifest,
        Self::AbiIncompatible,
        Self::BuildMismatch,
        Self::DuplicateId,
        Self::Disabled,
        Self::HashMismatch,
        Self::Unsigned,
        Self::BadSignature,
        Self::UntrustedSigner,
        Self::NotGranted,
        Self::ClaimConflict,
        Self::ConfigInvalid,
        Self::LoadFailed,
        Self::LayoutMismatch,
        Self::InitFailed,
        Self::InitPanicked,
        Self::InitTimeout,
        Self::MissingDependency,
        Self::DependencyVersion,
        Self::DependencyCycle,
    ];

    /// The stable code, e.g. `not_a_library`.
    pub const fn code(self) -> &'static str {
        match self {
            Self::UnsafePermissions => "unsafe_permissions",
            Self::NotALibrary => "not_a_library",
            Self::TooLarge => "too_large",
            Self::Truncated => "truncated",
            Self::NoManifest => "no_manifest",
            Self::BadManifest => "bad_manifest",
            Self::AbiIncompatible => "abi_incompatible",
            Self::BuildMismatch => "build_mismatch",
            Self::DuplicateId => "duplicate_id",
            Self::Disabled => "disabled",
            Self::HashMismatch => "hash_mismatch",
            Self::Unsigned => "unsigned",
            Self::BadSignature => "bad_signature",
            Self::UntrustedSigner => "untrusted_signer",
            Self::NotGranted => "not_granted",
            Self::ClaimConflict => "claim_conflict",
            Self::ConfigInvalid => "config_invalid",
            Self::LoadFailed => "load_failed",
            Self::LayoutMismatch => "layout_mismatch",
            Self::InitFailed => "init_failed",
            Self::InitPanicked => "init_panicked",
            Self::InitTimeout => "init_timeout",
            Self::MissingDependency => "missing_dependency",
            Self::DependencyVersion => "dependency_version",
            Self::DependencyCycle => "dependency_cycle",
        }
    }

    /// Whether the refusal happened before any code of the library ran.
    pub const fn before_load(self) -> bool {
        !matches!(
            self,
            Self::LoadFailed
                | Self::LayoutMismatch
                | Self::ConfigInvalid
                | Self::InitFailed
                | Self::InitPanicked
                | Self::InitTimeout
        )
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A library the pipeline refused: which file, which plugin (when known), why, and what was
/// expected versus found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: refused ({reason}): {detail}", file.display())]
pub struct Refusal {
    /// The library file as found in the plugin directory.
    pub file: PathBuf,
    /// The plugin id, once the manifest has been read.
    pub id: Option<PluginId>,
    /// The stable reason.
    pub reason: RefusalReason,
    /// What was expected and what was found, and what to do about it.
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(
        file: impl Into<PathBuf>,
        reason: RefusalReason,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            id: None,
            reason,
            detail: detail.into(),
        }
    }

    pub(crate) fn with_id(mut self, id: &PluginId) -> Self {
        self.id = Some(id.clone());
        self
    }
}

/// An infrastructure failure of a call (a domain error is an `Ok(Reply::Error)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{plugin}/{action}: {code}: {message}")]
pub struct CallError {
    /// What went wrong.
    pub code: CallErrorCode,
    /// The plugin called.
    pub plugin: String,
    /// The action called.
    pub action: String,
    /// Detail for people.
    pub message: String,
}

/// Errors of the host itself: configuration, policy and I/O outside any one plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A service operation the embedding program registered is not valid
    /// (`HostBuilder::operation`): a bad name, a built-in service's name, or registered twice.
    #[error("invalid service operation: {0}")]
    Service(String),
    /// The policy file could not be read.
    #[error("cannot read policy file {}", path.display())]
    PolicyRead {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is malformed; the message has the location.
    #[error("invalid policy file {}: {message}", path.display())]
    PolicyInvalid {
        /// The policy file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// A plugin directory could not be read.
    #[error("cannot read plugin directory {}", path.display())]
    PluginDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The audit log file could not be opened.
    #[error("cannot open the audit log {}", path.display())]
    AuditLog {
        /// The audit log file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key/value store could not be opened.
    #[error("cannot open the key/value store {}: {message}", path.display())]
    Kv {
        /// The store file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The lock file could not be read or written, or is malformed.
    #[error("lock file {}: {message}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// No plugin with this id is loaded.
    #[error("no plugin {0:?} is loaded")]
    UnknownPlugin(String),
    /// The operation needs a library file, and the plugin is compiled into the host program.
    #[error("plugin {plugin:?} is built into the host program: it has no file to reload")]
    Builtin {
        /// The plugin.
        plugin: String,
    },
    /// The operation needs the plugin running, and it is not.
    #[error("plugin {plugin:?} is not running (it is {state})")]
    NotRunning {
        /// The plugin.
        plugin: String,
        /// Its state.
        state: String,
    },
    /// A plugin cannot be enabled: a plugin it depends on (not optionally) is not running.
    #[error(
        "plugin {plugin:?} depends on {dependency:?} ({range}), which is {state}: enable {dependency} first"
    )]
    DependencyNotRunning {
        /// The plugin to enable.
        plugin: String,
        /// The plugin it depends on.
        dependency: String,
        /// The range it needs.
        range: String,
        /// What the dependency is instead of running (`disabled`, `not loaded`…).
        state: String,
    },
    /// A timer job could not be run by hand ([`crate::Host::run_job`]).
    #[error("plugin {plugin:?}: {reason}")]
    Job {
        /// The plugin.
        plugin: String,
        /// Why.
        reason: RunJobError,
    },
    /// The plugin's `validate_config` rejected a config.
    #[error("plugin {plugin:?} rejected the config: {}", errors.join("; "))]
    ConfigRejected {
        /// The plugin.
        plugin: String,
        /// Its errors.
        errors: Vec<String>,
    },
    /// A capability named by the operator does not parse.
    #[error("{0}")]
    BadCapability(String),
    /// The plugin directories cannot be watched.
    #[error("cannot watch the plugin directories: {0}")]
    Watch(String),
    /// Creating the plugin again failed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The shadow directory (where libraries are copied before loading) could not be created.
    #[error("cannot create the shadow directory in {}", path.display())]
    ShadowDir {
        /// Where it was to be created.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin declares no resource at this path ([`crate::Host::resource`]).
    #[error(
        "plugin {plugin:?} declares no resource {path:?} (see its plugin.json's \"resources\")"
    )]
    NoSuchResource {
        /// The plugin.
        plugin: String,
        /// The path asked for.
        path: String,
    },
}

/// Why a job could not be run by hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunJobError {
    /// The plugin has no job of that name.
    #[error("the plugin has no timer job named {0:?}")]
    NoSuchJob(String),
    /// A run of the job is still going; runs never overlap.
    #[error("timer job {0:?} is running now; a run by hand would overlap it")]
    AlreadyRunning(String),
}

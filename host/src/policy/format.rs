//! The languages a policy is written in.

/// The language a policy is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFormat {
    /// TOML (`airlock.toml`), the usual one.
    Toml,
    /// JSON, for policies written by programs.
    Json,
}

impl PolicyFormat {
    /// The format a policy file's name says: JSON for `.json`, TOML otherwise.
    pub fn of(path: &std::path::Path) -> Self {
        if path.extension().is_some_and(|e| e == "json") {
            Self::Json
        } else {
            Self::Toml
        }
    }
}

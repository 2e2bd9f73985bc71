//! The plugin's lines in the host's log, in its span: plain ([`Context::log`]) or with
//! structured fields ([`Context::log_with`], sent as a `log write` request).

use abi_stable::std_types::{RResult, RStr};

use super::Context;
use crate::error::ContextError;
use crate::ffi::LogLevel;
use crate::wire::{self, Request};

/// A log level for [`Context::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Errors.
    Error,
    /// Warnings.
    Warn,
    /// Information.
    Info,
    /// Debugging detail.
    Debug,
    /// Tracing detail.
    Trace,
}

impl Level {
    /// Its value on the wire.
    pub const fn code(self) -> LogLevel {
        match self {
            Self::Error => LogLevel::ERROR,
            Self::Warn => LogLevel::WARN,
            Self::Info => LogLevel::INFO,
            Self::Debug => LogLevel::DEBUG,
            Self::Trace => LogLevel::TRACE,
        }
    }
}

impl Context {
    /// Writes a line to the host's log, in this plugin's span.
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] after teardown.
    #[inline]
    pub fn log(&self, level: Level, message: &str) -> Result<(), ContextError> {
        if let Some(fns) = self.fns {
            return super::fast::log(fns, self.raw.token, level.code(), message);
        }
        match (self.raw.vtable.log())(self.raw.token, level.code(), RStr::from_str(message)) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Logs `message` with structured `fields` (name, JSON value): the host emits them as
    /// `tracing` fields of one event on the plugin's span, so a host writing JSON logs has
    /// them as JSON.
    ///
    /// ```no_run
    /// # use airlock_abi::{Context, Level};
    /// # fn f(ctx: &Context) {
    /// ctx.info_with("order shipped", &[("order", 42.into()), ("express", true.into())]);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ContextError::Revoked`] after teardown; `BadRequest` for a field name that is not
    /// `a-z A-Z 0-9 _ .` or more than [`wire::MAX_LOG_FIELDS`] fields.
    pub fn log_with(
        &self,
        level: Level,
        message: &str,
        fields: &[(&str, serde_json::Value)],
    ) -> Result<(), ContextError> {
        let line = wire::LogLine {
            level: level.code().0,
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        };
        let body =
            serde_json::to_vec(&line).map_err(|e| ContextError::BadRequest(e.to_string()))?;
        self.request(
            Request::LogWrite.service(),
            Request::LogWrite.operation(),
            &body,
        )
        .map(drop)
    }

    /// [`Context::log_with`] at info level; a revoked context drops the line.
    pub fn info_with(&self, message: &str, fields: &[(&str, serde_json::Value)]) {
        let _ = self.log_with(Level::Info, message, fields);
    }

    /// [`Context::log_with`] at warn level; a revoked context drops the line.
    pub fn warn_with(&self, message: &str, fields: &[(&str, serde_json::Value)]) {
        let _ = self.log_with(Level::Warn, message, fields);
    }

    /// [`Context::log_with`] at error level; a revoked context drops the line.
    pub fn error_with(&self, message: &str, fields: &[(&str, serde_json::Value)]) {
        let _ = self.log_with(Level::Error, message, fields);
    }

    /// Logs at info level; a revoked context drops the line.
    pub fn info(&self, message: &str) {
        let _ = self.log(Level::Info, message);
    }

    /// Logs at warn level; a revoked context drops the line.
    pub fn warn(&self, message: &str) {
        let _ = self.log(Level::Warn, message);
    }

    /// Logs at error level; a revoked context drops the line.
    pub fn error(&self, message: &str) {
        let _ = self.log(Level::Error, message);
    }

    /// Logs at debug level; a revoked context drops the line.
    pub fn debug(&self, message: &str) {
        let _ = self.log(Level::Debug, message);
    }
}

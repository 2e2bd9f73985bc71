//! The interface crate of the editor example (`host/examples/editor.rs`): the `editor` service
//! the editor offers its plugins — reading a buffer and replacing its text — named once, with
//! its types, for both sides. The editor registers a handler per operation
//! (`HostBuilder::operation::<ReadBuffer>(..)`); a plugin calls it with
//! `ctx.service::<ReadBuffer>(&input)` and declares `service:editor.read` in its manifest.
//! Neither side spells an operation's name.
//!
//! Changing an operation's types is a new `version`: a plugin built against another version
//! than the editor's gets a clear `unsupported` answer naming both, never a misread value.

use serde::{Deserialize, Serialize};

/// A buffer, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buffer {
    /// The buffer's name, e.g. `notes`.
    pub buffer: String,
}

/// A buffer's new text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replace {
    /// The buffer's name.
    pub buffer: String,
    /// Its new text.
    pub text: String,
}

airlock_abi::service! {
    /// The editor's buffers.
    pub service Editor = "editor" {
        /// Reads a buffer's text (capability `service:editor.read`).
        pub operation ReadBuffer = "read" (version 1): Buffer => String;
        /// Replaces a buffer's text (capability `service:editor.replace`).
        pub operation ReplaceBuffer = "replace" (version 1): Replace => ();
    }
}

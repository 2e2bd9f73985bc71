//! An interface crate: the `probe` service that the test hosts offer and the `probe` fixture
//! calls, named once here for both sides (service, operations, versions, types).

use serde::{Deserialize, Serialize};

/// What [`Ping`] sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingInput {
    /// Echoed back.
    pub text: String,
}

airlock_abi::service! {
    /// The service.
    pub service Probe = "probe" {
        /// Answers who called and with what: `pong to <plugin> (generation <n>): <text>`.
        pub operation Ping = "ping" (version 1): PingInput => String;
        /// Fails as the test host decides: its handler answers an error for `"error"`, and
        /// panics for `"panic"`.
        pub operation Fail = "fail" (version 1): String => ();
    }
}

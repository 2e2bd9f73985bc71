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
        /// Answers its input: any JSON value, so the contract says JSON.
        pub operation Echo = "echo" (version 1, json): serde_json::Value => serde_json::Value;
        /// The same types left to the default encoding (postcard), which cannot read a
        /// `serde_json::Value`: every call fails with a message saying to declare it JSON.
        pub operation EchoBinary = "echo_binary" (version 1): serde_json::Value => serde_json::Value;
    }
}

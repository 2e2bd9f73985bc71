//! An interface crate: the `probe` service of `airlock-contract-probe` as a later version of
//! that crate declares it, for a plugin built against another version of the interface crate
//! than its host. The test hosts are built against `airlock-contract-probe`; the
//! `probe-next` fixture is built against this crate.
//!
//! Each operation below is `probe.ping` as it might have evolved; they are separate types
//! only so that one plugin can call every variant:
//!
//! - [`PingV2`]: the input changed and the version was bumped, as it should be;
//! - [`PingWrongInput`]: the input changed but the version was not bumped;
//! - [`PingWrongOutput`]: the output changed but the version was not bumped.

use serde::{Deserialize, Serialize};

/// What [`PingV2`] sends. A version-1 host would decode it into its own input (it ignores
/// the field it does not know) and misread it; the version is what stops that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingInputV2 {
    /// Echoed back.
    pub text: String,
    /// Answer in capitals (new in version 2).
    pub shout: bool,
}

/// What [`PingWrongInput`] sends: `text` renamed to `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenamedPingInput {
    /// Echoed back (was `text`).
    pub message: String,
}

/// What [`PingWrongOutput`] sends: version 1's input, unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingInput {
    /// Echoed back.
    pub text: String,
}

airlock_abi::service! {
    /// The service: the same name as in `airlock-contract-probe`.
    pub service Probe = "probe" {
        /// `ping` at version 2: the input gained a field, and the version was bumped with it.
        pub operation PingV2 = "ping" (version 2): PingInputV2 => String;
        /// `ping` whose input field was renamed without a version bump: still version 1, but
        /// a version-1 host cannot decode its input.
        pub operation PingWrongInput = "ping" (version 1): RenamedPingInput => String;
        /// `ping` whose answer became a number (the length of the answer) without a version
        /// bump: still version 1, with the input a version-1 host expects, but that host
        /// answers a string.
        pub operation PingWrongOutput = "ping" (version 1): PingInput => u64;
    }
}

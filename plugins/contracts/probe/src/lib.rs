//! An interface crate: the `probe` service that the test hosts offer and the `probe` fixture
//! calls, named once here for both sides (service, operations, versions, types).

use airlock_abi::contract::{Operation, Service};
use serde::{Deserialize, Serialize};

/// The service.
pub struct Probe;

impl Service for Probe {
    const NAME: &'static str = "probe";
}

/// Answers who called and with what: `pong to <plugin> (generation <n>): <text>`.
pub struct Ping;

/// What [`Ping`] sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingInput {
    /// Echoed back.
    pub text: String,
}

impl Operation for Ping {
    type Service = Probe;
    const NAME: &'static str = "ping";
    const VERSION: u32 = 1;
    type Input = PingInput;
    type Output = String;
}

/// Fails as the test host decides: its handler answers an error, or panics.
pub struct Fail;

impl Operation for Fail {
    type Service = Probe;
    const NAME: &'static str = "fail";
    const VERSION: u32 = 1;
    /// `"error"` or `"panic"`.
    type Input = String;
    type Output = ();
}

//! The state a call carries on its thread while it runs: who is calling (the caller), whether
//! it was cancelled (the cancel token), and where a streamed call's chunks go (the stream).

pub(crate) mod caller;
pub(crate) mod cancel;
pub(crate) mod stream;

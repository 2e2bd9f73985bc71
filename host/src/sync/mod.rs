//! The concurrent core, one of the host's rooms for `unsafe`: hazard pointers through which a
//! call reads a plugin's running instance ([`hazard`]), the watchdog's records of calls in
//! progress ([`watchdog`]), and the primitives both are written against ([`primitives`]),
//! which are loom's under `--cfg loom` so that `scripts/loom.sh` model-checks this very code.

pub(crate) mod hazard;
pub(crate) mod primitives;
pub(crate) mod watchdog;

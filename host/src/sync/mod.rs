//! The concurrent core, one of the host's two rooms where memory safety rests on the code's own
//! reasoning (with the loader): hazard pointers through which a call reads a plugin's running
//! instance ([`hazard`]), the watchdog's records of calls in progress ([`watchdog`]), the turns
//! of a worker's shared-memory channel ([`turns`]) and the memory they live in ([`shm`]), and
//! the primitives they are written against ([`primitives`]), which are loom's under
//! `--cfg loom` so that `scripts/loom.sh` model-checks this very code.

pub(crate) mod hazard;
pub(crate) mod primitives;
pub(crate) mod shm;
pub(crate) mod turns;
pub(crate) mod watchdog;

#!/usr/bin/env bash
# Model-checks the concurrent core with loom: the hazard pointers (nested reads, emptied cells,
# record hand-off, retiring while reading, waiting for the readers of a value still in use), the
# watchdog's record protocol, and the turns of a worker's shared-memory channel. The host is built with `--cfg loom` into its own target
# directory, so the normal build is untouched. Extra arguments go to the test harness.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
cargo test --release -p airlock --lib \
  --target-dir target/loom -- loom_models "$@"

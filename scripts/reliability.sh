#!/usr/bin/env bash
# The long runs of the adversarial suite, printing the figures RELIABILITY.md quotes:
# the hostile-file corpus, 2000 mutated libraries, an audit flood, 100 kill -9 of a host
# writing to its kv store (single writes, and batches), operations racing calls, 1000 hot-reload swaps under load, and 100
# rounds of an isolated plugin crashing its worker each way (segfault, abort, stack overflow).
#   scripts/reliability.sh            (fuzzing is separate: scripts/fuzz.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export AIRLOCK_KILL_ROUNDS="${AIRLOCK_KILL_ROUNDS:-100}"
export AIRLOCK_RELOAD_SWAPS="${AIRLOCK_RELOAD_SWAPS:-1000}"
export AIRLOCK_CRASH_ROUNDS="${AIRLOCK_CRASH_ROUNDS:-100}"
log=target/reliability.log
mkdir -p target
cargo test -p airlock-tests --test e2e -- --nocapture --test-threads 1 \
  hostile_corpus hostile_plugins acknowledged_kv_writes kill_9_during crashes_end_the_worker >"$log" 2>&1
cargo test -p airlock-tests --test races -- --nocapture >>"$log" 2>&1
cargo test -p airlock-tests --test reload -- --nocapture two_threads_keep_calling >>"$log" 2>&1
grep -Eo '(hostile files|[0-9]+ mutated|audit flood|kill -9:|kill -9 batches:|race:|[0-9]+ swaps in|isolation:).*' "$log"
grep -E '^test result' "$log"

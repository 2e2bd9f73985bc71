#!/usr/bin/env bash
# Fuzzes Airlock's parsers of untrusted input with cargo-fuzz (libFuzzer) on the stable
# toolchain, and prints, per target, the inputs run and the crashes found.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# The file reader is seeded with real plugin libraries built from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable compiler accept them.
export RUSTC_BOOTSTRAP=1

# Seeds: real plugin libraries (a few, to keep the corpus small), and real manifests/policies.
cargo build --quiet -p airlock-example-hello -p airlock-example-counter -p airlock-example-ticker -p airlock-fixture-skills \
  --config 'profile.dev.debug=false' --config 'profile.dev.strip="debuginfo"' --target-dir target/fuzz-seeds
mkdir -p fuzz/corpus/file_reader fuzz/corpus/manifest fuzz/corpus/policy
cp target/fuzz-seeds/debug/libairlock_example_*.so target/fuzz-seeds/debug/libairlock_fixture_skills.so fuzz/corpus/file_reader/ 2>/dev/null || true
cp plugins/*/plugin.json plugins/fixtures/*/plugin.json fuzz/corpus/manifest/ 2>/dev/null || true
cp scripts/demo/airlock.toml fuzz/corpus/policy/demo.toml

printf '%-12s %12s %8s\n' target inputs crashes
for target in manifest policy file_reader; do
  log="fuzz/${target}.log"
  set +e
  (cd fuzz && cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -max_len=4194304 -rss_limit_mb=4096) >"$log" 2>&1
  status=$?
  set -e
  runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1)
  crashes=$(ls fuzz/artifacts/"$target" 2>/dev/null | grep -c '^crash-' || true)
  printf '%-12s %12s %8s\n' "$target" "${runs:-?}" "$crashes"
  if [ "$status" -ne 0 ]; then
    echo "  $target stopped with status $status; see $log and fuzz/artifacts/$target"
  fi
done

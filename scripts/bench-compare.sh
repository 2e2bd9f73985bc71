#!/usr/bin/env bash
# Compares the call path and the callbacks of two builds on this machine, in alternation, so
# that the machine's noise falls on both alike: each build is benchmarked ROUNDS times (base,
# new, base, new, ...), and the table gives every run's median and the ratio of the medians of
# the runs (new ÷ base; below 1 is faster).
#   scripts/bench-compare.sh BASE [NEW]      # git revisions; NEW defaults to the working tree
#   ROUNDS=3 scripts/bench-compare.sh HEAD~5
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev="${1:?usage: scripts/bench-compare.sh BASE [NEW]}"
new_rev="${2:-}"
rounds="${ROUNDS:-2}"
work="$PWD/target/bench-compare"
mkdir -p "$work"

# A build's source: a worktree at the revision, or this checkout for the working tree.
checkout() {
  local name="$1" rev="$2" dir="$work/$1"
  if [ -z "$rev" ]; then
    echo "$PWD"
    return
  fi
  if [ -d "$dir" ]; then
    git worktree remove --force "$dir" >/dev/null
  fi
  git worktree add --detach "$dir" "$rev" >/dev/null 2>&1
  echo "$dir"
}

# Builds the bench-noop plugin, the worker and the benchmark of one source tree, each build in
# its own target directory.
build() {
  local src="$1" target="$work/target-$2"
  (cd "$src" && cargo build --release --quiet -p airlock-fixture-bench-noop -p airlock-worker \
    --target-dir "$target/plugins")
  (cd "$src/bench" && CARGO_TARGET_DIR="$target/bench" cargo bench --no-run --quiet --bench calls)
}

# Runs the call-path and thread groups once; appends the medians and callback figures to a
# JSON-lines file.
run() {
  local src="$1" name="$2" target="$work/target-$2"
  export AIRLOCK_BENCH_PLUGIN="$target/plugins/release/libairlock_fixture_bench_noop.so"
  export AIRLOCK_BENCH_WORKER="$target/plugins/release/airlock-worker"
  export AIRLOCK_BENCH_OUT="$work/$name-callbacks.json"
  (cd "$src/bench" && CARGO_TARGET_DIR="$target/bench" cargo bench --quiet --bench calls -- \
    --warm-up-time 1 --measurement-time 3 '^(call|threads)/' >/dev/null)
  python3 - "$target/bench/criterion" "$AIRLOCK_BENCH_OUT" "$work/$name.jsonl" <<'PY'
import json, sys, pathlib
criterion, callbacks, out = sys.argv[1:]
row = {}
for estimates in pathlib.Path(criterion).glob("*/*/new/estimates.json"):
    group, name = estimates.parts[-4], estimates.parts[-3]
    if group in ("call", "threads"):
        row[f"{group}/{name}"] = json.load(open(estimates))["median"]["point_estimate"]
def figures(prefix, values):
    for key, value in values.items():
        if isinstance(value, dict):
            figures(f"{prefix}{key}/", value)
        elif key.endswith("_ns") and isinstance(value, (int, float)):
            row[f"{prefix}{key}"] = value
figures("callbacks/", json.load(open(callbacks)))
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
}

base_src="$(checkout base "$base_rev")"
new_src="$(checkout new "$new_rev")"
rm -f "$work/base.jsonl" "$work/new.jsonl"
build "$base_src" base
build "$new_src" new
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds: base" >&2
  run "$base_src" base
  echo "round $round of $rounds: new" >&2
  run "$new_src" new
done

python3 - "$work/base.jsonl" "$work/new.jsonl" "$base_rev" "${new_rev:-working tree}" <<'PY'
import json, statistics, sys
base = [json.loads(l) for l in open(sys.argv[1])]
new = [json.loads(l) for l in open(sys.argv[2])]
print(f"base: {sys.argv[3]}, new: {sys.argv[4]}; {len(base)} alternating runs each (ns)\n")
print("| figure | base runs | new runs | new ÷ base |")
print("|---|---|---|---|")
for key in sorted(set(base[0]) & set(new[0])):
    b = [r[key] for r in base if key in r]
    n = [r[key] for r in new if key in r]
    ratio = statistics.median(n) / statistics.median(b)
    runs = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
    print(f"| {key} | {runs(b)} | {runs(n)} | {ratio:.2f} |")
PY

#!/usr/bin/env bash
# Runs Airlock's benchmarks in release mode and writes BENCHMARKS.md: every figure a median
# with its 95% confidence interval (criterion), every comparison a ratio from the same run.
#   scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p airlock-fixture-bench-noop -p airlock-worker --target-dir target/bench-plugins
export AIRLOCK_BENCH_PLUGIN="$PWD/target/bench-plugins/release/libairlock_fixture_bench_noop.so"
export AIRLOCK_BENCH_WORKER="$PWD/target/bench-plugins/release/airlock-worker"
export AIRLOCK_BENCH_OUT="$PWD/bench/target/bench-callbacks.json"
export AIRLOCK_BENCH_STARTUP_OUT="$PWD/bench/target/bench-startup.json"
mkdir -p bench/target
# The wasm peer (wasmtime) takes minutes to build the first time; it is only built here.
# Criterion writes into the bench workspace's own target directory, which is where the figures
# are read from below: a CARGO_TARGET_DIR of the caller's would send them elsewhere.
(cd bench && unset CARGO_TARGET_DIR && cargo bench --features wasm --bench calls -- --warm-up-time 1 --measurement-time 3 && cargo bench --bench startup)

python3 - <<'PY'
import json, os, platform, datetime
base = "bench/target/criterion"
def est(group, name):
    d = json.load(open(f"{base}/{group}/{name}/new/estimates.json"))["median"]
    return d["point_estimate"], d["confidence_interval"]["lower_bound"], d["confidence_interval"]["upper_bound"]
def fmt(ns):
    return f"{ns/1e6:.2f} ms" if ns >= 1e6 else f"{ns/1e3:.2f} µs" if ns >= 1e3 else f"{ns:.1f} ns"
rows = [("call", "raw", "raw `extern \"C\"` call into the cdylib (function pointer)"),
        ("call", "handle_noop", "no-op action, full path, pre-resolved handle (`.call().bytes(..)`)"),
        ("call", "handle_noop_into", "no-op action, full path, pre-resolved handle, answer into the caller's buffer (`call_into`)"),
        ("call", "serial_noop", "no-op action of a `serial` plugin (its lock taken per call), `.call().bytes(..)`"),
        ("call", "serial_noop_into", "no-op action of a `serial` plugin, `call_into`"),
        ("call", "by_name_noop", "no-op action, full path, by name (`host.call(..).bytes(..)`)"),
        ("store", "hashmap_rwlock_get", "reference: a `HashMap` lookup behind a `RwLock` of the value a kv `get` reads (its JSON bytes, decoded as the `u32` they are)"),
        ("store", "hashmap_rwlock_lookup", "reference: the same lookup, not decoded"),
        ("store", "redb_write", "reference: one bare durable redb write (a transaction of one insert, committed)"),
        ("json", "action", "JSON action, ~100-byte payload"),
        ("json", "bare_serde", "the bare serde_json work it has to do"),
        ("json", "json_bytes", "the JSON action through `.bytes(..)` (caller encodes, no answer parse)"),
        ("json", "raw_bytes", "a bytes-in, bytes-out action (`add_bytes`), same payload"),
        ("json", "bytes_into", "a bytes action writing into the host's buffer (`add_bytes_into`), same payload"),
        ("json", "one_copy", "one copy of the payload into a fresh buffer (`to_vec`): the least an owned answer costs"),
        ("threads", "1", "no-op action, 1 thread (time per call)"),
        ("threads", "2", "no-op action, 2 threads (aggregate time per call)"),
        ("threads", "raw_1", "control: raw call, 1 thread (time per call)"),
        ("threads", "raw_2", "control: raw call, 2 threads (aggregate time per call)"),
        ("peer", "wasmtime_noop", "wasmtime (Cranelift) call of a function that does nothing"),
        ("peer", "process_same_core", "process plugin, one JSON line round trip (both processes pinned to CPU 0)"),
        ("peer", "process_two_cores", "process plugin, one JSON line round trip (unpinned)"),
        ("peer", "isolated_noop", "isolated plugin (`isolation = \"process\"`): no-op action round trip to its worker (`call_into`)"),
        ("peer", "isolated_json", "isolated plugin: the JSON action, ~100-byte payload"),
        ("reload", "forced", "reload: file read to new generation serving, old one retired")]
e = {(g, n): est(g, n) for g, n, _ in rows}
m = {k: v[0] for k, v in e.items()}
cb = json.load(open("bench/target/bench-callbacks.json"))
st = json.load(open("bench/target/bench-startup.json"))
out = ["# Benchmarks", "",
       f"Written by `scripts/bench.sh` on {datetime.date.today()} ({platform.machine()}, {os.cpu_count()} cores, shared and noisy): medians with their 95% confidence intervals, and ratios measured in the same run. Release build.", "",
       "| what | median | 95% interval |", "|---|---|---|"]
for g, n, label in rows:
    p, lo, hi = e[(g, n)]
    out.append(f"| {label} | {fmt(p)} | {fmt(lo)} – {fmt(hi)} |")
out.append(f"| capability-checked host callback from inside a plugin, through the host's function table (`ctx.log`, filtered out; self-timed, 2M calls) | {cb['checked_ns']:.1f} ns | |")
out.append(f"| the same callback through the vtable's frozen `log` slot (what a plugin without the table makes) | {cb['checked_frozen_ns']:.1f} ns | |")
out.append(f"| raw callback through a function table (same loop) | {cb['raw_ns']:.1f} ns | |")
out.append(f"| a service operation of the embedding program called from inside a plugin (`ctx.service`, a small request and answer, postcard through the function table; self-timed) | {cb['service_ns']:.1f} ns | |")
out.append(f"| the same operation through the frozen `request` slot (JSON both ways) | {cb['service_frozen_ns']:.1f} ns | |")
out.append(f"| control for the service call: a `HashMap` lookup behind a `RwLock`, cloning the small value (same loop) | {cb['map_get_ns']:.1f} ns | |")
out.append(f"| the built-in kv `get` of a small value, called the same way | {cb['kv_ns']:.1f} ns | |")
out.append(f"| the built-in kv `set` of a small value, durable when it returns, called the same way | {cb['kv_set_ns'] / 1e3:.1f} µs | |")
two = cb.get("two_threads", {})
if "checked_ns" in two:
    out.append(f"| capability-checked host callback, two threads calling back at once (each thread's own time per callback) | {two['checked_ns']:.1f} ns | |")
    out.append(f"| the built-in kv `get`, two threads at once (each thread's own time) | {two['kv_ns']:.1f} ns | |")
    out.append(f"| the embedder service call, two threads at once (each thread's own time) | {two['service_ns']:.1f} ns | |")
out.append(f"| the same callback on a context whose host functions do nothing (same loop): the floor of the frozen `log` slot | {cb['signature_ns']:.1f} ns | |")
out.append(f"| isolated plugin: worker started to its first answer (`enable` after `disable`; median of 21) | {cb['isolated_start_ms']:.1f} ms | |")
out.append(f"| isolated plugin: crashed worker (`abort`) to its first answer after the restart (median of 21) | {cb['isolated_restart_ms']:.1f} ms | |")
out.append(f"| resident memory per retained generation (over {cb['reload_generations']} forced reloads; the library is {cb['library_kib']} KiB) | {cb['rss_per_generation_kib']:.0f} KiB | |")
out += ["", "## Startup: verify + load + init of N plugins, against a bare dlopen of the same files", "",
        "Each run is a fresh process; the four kinds of run alternate; medians of 5 (min – max beside each). In place: the files installed read-only in directories only root or this user can write, mapped from the descriptor that was hashed. Sealed: the same files, each loaded from a sealed in-memory copy (forced with `[host] always_seal`, what a file another user could write gets). BLAKE3 alone: the same files read and hashed on one core. Bare: `dlopen(RTLD_NOW | RTLD_LOCAL)` of each file at its own path, with no checks, no copy and no init.", "",
        "| N | in place | per plugin | ÷ bare | sealed copies | per plugin | ÷ bare | BLAKE3 alone | ÷ bare | bare dlopen | per plugin |", "|---|---|---|---|---|---|---|---|---|---|---|"]
def cell(r, k): return f"{r[k + '_median_ms']:.1f} ms ({r[k + '_min_ms']:.1f} – {r[k + '_max_ms']:.1f})"
for r in st:
    out.append(f"| {r['n']} | {cell(r, 'in_place')} | {r['in_place_per_plugin_ms']:.3f} ms | {r['in_place_ratio']:.2f} | {cell(r, 'sealed')} | {r['sealed_per_plugin_ms']:.3f} ms | {r['sealed_ratio']:.2f} | {cell(r, 'hash')} | {r['hash_ratio']:.2f} | {cell(r, 'bare')} | {r['bare_per_plugin_ms']:.3f} ms |")
by_n = {r["n"]: r for r in st}
per_plugin = [by_n[n]["in_place_per_plugin_ms"] for n in (10, 100, 200)]
def verdict(ok): return "met" if ok else "**missed**"
ratios = [
    ("no-op action by handle (`call_into`) ÷ raw call", m[("call","handle_noop_into")]/m[("call","raw")], "≤ 3", lambda r: r <= 3),
    ("no-op action by handle (`.call().bytes(..)`) ÷ raw call", m[("call","handle_noop")]/m[("call","raw")], "≤ 3", lambda r: r <= 3),
    ("no-op action by name ÷ by handle (`.call().bytes(..)` both)", m[("call","by_name_noop")]/m[("call","handle_noop")], "≤ 1.3", lambda r: r <= 1.3),
    ("kv `get` from inside the plugin ÷ the `HashMap` + `RwLock` lookup of the same value", cb["kv_ns"]/m[("store","hashmap_rwlock_get")], "≤ 4", lambda r: r <= 4),
    ("kv `set` from inside the plugin (durable) ÷ a bare redb write", cb["kv_set_ns"]/m[("store","redb_write")], "—", lambda r: True),
    ("embedder service call, ns", cb["service_ns"], "≤ 100", lambda r: r <= 100),
    ("wasmtime no-op ÷ no-op action (`call_into`): above 1, the native call is faster", m[("peer","wasmtime_noop")]/m[("call","handle_noop_into")], "≥ 1", lambda r: r >= 1),
    ("wasmtime no-op ÷ no-op action (`.call().bytes(..)`)", m[("peer","wasmtime_noop")]/m[("call","handle_noop")], "≥ 1", lambda r: r >= 1),
    ("checked callback ÷ raw callback", cb["checked_ns"]/cb["raw_ns"], "≤ 3", lambda r: r <= 3),
    ("checked callback through the frozen slot ÷ through the function table (same run)", cb["checked_frozen_ns"]/cb["checked_ns"], "—", lambda r: True),
    ("embedder service call ÷ `HashMap` + `RwLock` get (same loop, from inside the plugin)", cb["service_ns"]/cb["map_get_ns"], "≤ 3", lambda r: r <= 3),
    ("embedder service call through the frozen slot ÷ through the function table", cb["service_frozen_ns"]/cb["service_ns"], "—", lambda r: True),
    ("embedder service call ÷ built-in kv get (same run, from inside the plugin)", cb["service_ns"]/cb["kv_ns"], "—", lambda r: True),
    ("embedder service call ÷ raw callback", cb["service_ns"]/cb["raw_ns"], "—", lambda r: True),
    ("the `log` slot's floor ÷ raw callback (the frozen signature's share)", cb["signature_ns"]/cb["raw_ns"], "—", lambda r: True),
    ("checked callback ÷ the `log` slot's floor (the membrane's share)", cb["checked_ns"]/cb["signature_ns"], "—", lambda r: True),
    ("bytes action (`add_bytes_into`) ÷ (2 × no-op action + one copy), all `.bytes(..)`", m[("json","bytes_into")]/(2*m[("call","handle_noop")]+m[("json","one_copy")]), "≤ 1", lambda r: r <= 1),
    ("bytes action (`add_bytes`) ÷ (2 × no-op action + one copy)", m[("json","raw_bytes")]/(2*m[("call","handle_noop")]+m[("json","one_copy")]), "≤ 1", lambda r: r <= 1),
    ("serial no-op ÷ parallel no-op (`call_into`): the lock's share", m[("call","serial_noop_into")]/m[("call","handle_noop_into")], "—", lambda r: True),
    ("JSON action ÷ bare serde work", m[("json","action")]/m[("json","bare_serde")], "≤ 1.15", lambda r: r <= 1.15),
    ("2 threads ÷ 1 thread throughput (parallel plugin)", m[("threads","1")]/m[("threads","2")], "≥ 1.9", lambda r: r >= 1.9),
    ("callbacks scale: 2 threads ÷ 1 thread throughput of `ctx.service` calls", 2*cb["service_ns"]/two.get("service_ns", float("inf")), "≥ 1.8", lambda r: r >= 1.8),
    ("callbacks scale: 2 threads ÷ 1 thread throughput of `ctx.kv().get` calls", 2*cb["kv_ns"]/two.get("kv_ns", float("inf")), "≥ 1.8", lambda r: r >= 1.8),
    ("control: 2 threads ÷ 1 thread throughput of raw calls (what the machine gives)", m[("threads","raw_1")]/m[("threads","raw_2")], "—", lambda r: True),
    ("isolated no-op round trip ÷ JSON-line process peer, its faster placement (one core or two)", m[("peer","isolated_noop")]/min(m[("peer","process_same_core")], m[("peer","process_two_cores")]), "≤ 0.5", lambda r: r <= 0.5),
    ("isolated no-op ÷ in-process no-op (`call_into`)", m[("peer","isolated_noop")]/m[("call","handle_noop_into")], "—", lambda r: True),
    ("isolated JSON action ÷ in-process JSON action", m[("peer","isolated_json")]/m[("json","action")], "—", lambda r: True),
    ("isolated JSON action ÷ JSON-line process peer, its faster placement", m[("peer","isolated_json")]/min(m[("peer","process_same_core")], m[("peer","process_two_cores")]), "—", lambda r: True),
    ("crashed worker serving again, ms", cb["isolated_restart_ms"], "≤ 50", lambda r: r <= 50),
    ("process round trip ÷ JSON action (unpinned)", m[("peer","process_two_cores")]/m[("json","action")], "≥ 5", lambda r: r >= 5),
    ("process round trip ÷ JSON action (one core)", m[("peer","process_same_core")]/m[("json","action")], "≥ 5", lambda r: r >= 5),
    ("process round trip ÷ raw-bytes action (unpinned)", m[("peer","process_two_cores")]/m[("json","raw_bytes")], "≥ 1000", lambda r: r >= 1000),
    ("process round trip ÷ raw-bytes action (one core)", m[("peer","process_same_core")]/m[("json","raw_bytes")], "≥ 1000", lambda r: r >= 1000),
    ("startup in place of 10 installed plugins ÷ bare dlopen of the same files", by_n[10]["in_place_ratio"], "≤ 3", lambda r: r <= 3),
    ("startup in place of 100 installed plugins ÷ bare dlopen of the same files", by_n[100]["in_place_ratio"], "≤ 3", lambda r: r <= 3),
    ("startup in place of 200 installed plugins ÷ bare dlopen of the same files", by_n[200]["in_place_ratio"], "≤ 3", lambda r: r <= 3),
    ("startup of 100 plugins from sealed copies ÷ bare dlopen", by_n[100]["sealed_ratio"], "—", lambda r: True),
    ("BLAKE3 of the same 100 files alone (one core) ÷ bare dlopen", by_n[100]["hash_ratio"], "—", lambda r: True),
    ("startup in place per plugin, largest ÷ smallest of N = 10, 100, 200 (linear)", max(per_plugin) / min(per_plugin), "≤ 1.25", lambda r: r <= 1.25),
    ("reload", m[("reload","forced")]/1e6, "≤ 2 ms", lambda r: r <= 2),
]
out += ["", "## Against the targets", "", "| comparison | measured | target | |", "|---|---|---|---|"]
for name, r, target, ok in ratios:
    out.append(f"| {name} | {r:.2f} | {target} | {verdict(ok(r)) if target != '—' else 'shown'} |")
out += ["", "Not measured: RSS per reload cycle with unloading, because unloading is not offered (docs/hot-reload.md says why); every generation is retained, and its cost is the row above."]
open("BENCHMARKS.md.new", "w").write("\n".join(out) + "\n")
PY
# Keep the analysis section of BENCHMARKS.md (below the generated part) if there is one.
if [ -f BENCHMARKS.md ] && grep -q '^## Where the time goes' BENCHMARKS.md; then
  { echo; sed -n '/^## Where the time goes/,$p' BENCHMARKS.md; } >> BENCHMARKS.md.new
fi
mv BENCHMARKS.md.new BENCHMARKS.md
echo "wrote BENCHMARKS.md"

#!/usr/bin/env bash
# `airlock run --listen` against a bare hyper hello world, in the same run: throughput and
# latency of a trivial route (long-call's `GET /plugins/long-call/slow?0`, which answers
# "done") at 64 connections with wrk, each server measured three times in alternation.
#   scripts/bench-listen.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"

command -v wrk >/dev/null || { sudo -n true 2>/dev/null && SUDO=sudo || SUDO=; $SUDO apt-get install -y wrk >/dev/null; }
cargo build --release --quiet -p airlock-cli -p airlock-fixture-long-call --target-dir target/bench-plugins
(cd bench && cargo build --release --quiet --bin hello_hyper)

dir="$(mktemp -d)"
trap 'kill $airlock_pid $peer_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
chmod 700 "$dir"
mkdir -m 700 "$dir/plugins"
cp target/bench-plugins/release/libairlock_fixture_long_call.so "$dir/plugins/"
printf '[plugins.long-call.config]\ntrace = "%s/trace"\n' "$dir" > "$dir/policy.toml"
# The console reads a pipe this script holds open: it ends when the script does.
mkfifo "$dir/console"
target/bench-plugins/release/airlock run --listen 127.0.0.1:18080 \
  --policy "$dir/policy.toml" "$dir/plugins" <"$dir/console" >/dev/null 2>"$dir/airlock.log" &
exec 3>"$dir/console"
airlock_pid=$!
bench/target/release/hello_hyper 127.0.0.1:18081 &
peer_pid=$!
ready=
for _ in $(seq 100); do
  if curl -sf http://127.0.0.1:18080/plugins/long-call/slow?0 >/dev/null && curl -sf http://127.0.0.1:18081/ >/dev/null; then
    ready=1; break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "the route did not answer:"; cat "$dir/airlock.log"; exit 1; }

run() { # url -> "requests/s p99-ms"
  wrk -t2 -c64 -d"${secs}s" --latency "$1" | tee -a "$dir/wrk.log" | awk '
    /Requests\/sec/ {rps=$2}
    /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; p99=v}
    END {print rps, p99}'
}
echo "| run | airlock --listen req/s | p99 ms | bare hyper req/s | p99 ms | throughput ratio |"
echo "|---|---|---|---|---|---|"
for i in 1 2 3; do
  read -r a_rps a_p99 < <(run http://127.0.0.1:18080/plugins/long-call/slow?0)
  read -r h_rps h_p99 < <(run http://127.0.0.1:18081/)
  ratio=$(python3 -c "print(f'{$a_rps/$h_rps:.2f}')")
  echo "| $i | $a_rps | $a_p99 | $h_rps | $h_p99 | $ratio |"
done
if grep -q "Non-2xx" "$dir/wrk.log"; then echo "some answers were not 2xx:"; grep -B3 "Non-2xx" "$dir/wrk.log"; exit 1; fi

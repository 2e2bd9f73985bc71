#!/usr/bin/env bash
# Builds the example plugins and the airlock CLI (release), copies the plugins into their own
# directory and starts the demo console on them with the demo policy. Type /help at the prompt.
# Arguments go to `airlock run`: `scripts/demo.sh --trace` prints each call's span tree on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -s)" in
  Darwin) prefix=lib ext=dylib ;;
  MINGW* | MSYS* | CYGWIN*) prefix= ext=dll ;;
  *) prefix=lib ext=so ;;
esac

examples=(hello counter kv-counter ticker listener snoop shout guard commands crashy courier tally)
packages=(-p airlock-cli -p airlock-worker)
for name in "${examples[@]}"; do packages+=(-p "airlock-example-$name"); done
cargo build --release "${packages[@]}"

dir=target/demo-plugins
rm -rf "$dir"
mkdir -p "$dir"
chmod 755 "$dir"
for name in "${examples[@]}"; do
  cp "target/release/${prefix}airlock_example_${name//-/_}.$ext" "$dir/"
done
# The host refuses a library its group may write (unsafe_permissions), as cargo leaves one under
# umask 002.
chmod go-w "$dir"/*."$ext"

# A small web server on 127.0.0.1 for courier to fetch from (the policy allows that host).
web_port="${DEMO_WEB_PORT:-8766}"
listen="${DEMO_LISTEN:-127.0.0.1:8765}"
# The web console: the address to open, with its token, is printed as `console: http://…`.
console="${DEMO_CONSOLE:-127.0.0.1:8767}"
if command -v python3 >/dev/null; then
  python3 -m http.server "$web_port" --bind 127.0.0.1 --directory scripts/demo/www \
    >/dev/null 2>&1 &
  web=$!
  trap 'kill "$web" 2>/dev/null || true' EXIT
  echo "demo web server: http://127.0.0.1:$web_port/hello.txt"
else
  echo "python3 not found: no demo web server (courier's fetch will be unreachable)"
fi

echo "plugins in $dir; policy in scripts/demo/airlock.toml; data and audit log in target/demo-data"
mkdir -p target/demo-data
# hello's greeting comes from the environment: the policy says { env = "AIRLOCK_DEMO_GREETING" }.
export AIRLOCK_DEMO_GREETING="${AIRLOCK_DEMO_GREETING:-Welcome aboard}"
target/release/airlock run "$dir" --policy scripts/demo/airlock.toml --listen "$listen" \
  --console "$console" "$@"

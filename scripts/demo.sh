#!/usr/bin/env bash
# Builds the example plugins and the airlock CLI (release), copies the plugins into their own
# directory and starts the demo console on them with the demo policy. Type /help at the prompt.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -s)" in
  Darwin) prefix=lib ext=dylib ;;
  MINGW* | MSYS* | CYGWIN*) prefix= ext=dll ;;
  *) prefix=lib ext=so ;;
esac

examples=(hello counter kv-counter ticker listener snoop shout guard commands crashy)
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

echo "plugins in $dir; policy in scripts/demo/airlock.toml; data and audit log in target/demo-data"
mkdir -p target/demo-data
exec target/release/airlock run "$dir" --policy scripts/demo/airlock.toml "$@"

#!/usr/bin/env bash
# Builds the editor example's plugins (wordcount, formatter, wordfreq, written against the
# interface crate airlock-contract-editor), copies them into their own directory and runs the
# example host program on them: host/examples/editor.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$(uname -s)" in
  Darwin) prefix=lib ext=dylib ;;
  MINGW* | MSYS* | CYGWIN*) prefix= ext=dll ;;
  *) prefix=lib ext=so ;;
esac

plugins=(wordcount formatter wordfreq)
packages=()
for name in "${plugins[@]}"; do packages+=(-p "airlock-example-$name"); done
cargo build --release "${packages[@]}"

dir=target/editor-plugins
rm -rf "$dir"
mkdir -p "$dir"
chmod 755 "$dir"
for name in "${plugins[@]}"; do
  cp "target/release/${prefix}airlock_example_${name}.$ext" "$dir/"
done
exec cargo run --release -q -p airlock --example editor -- "$dir"

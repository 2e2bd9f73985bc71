#!/usr/bin/env bash
# The test command: installs the outside programs the tests drive, then runs every test.
#
# The tests use real peers, never stand-ins: the `minisign` tool (its keys, made with `-G`, sign
# plugins that must then load). A missing one is installed from the system's packages; a test
# whose program is missing fails and names this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package names of the programs the tests run, by command.
declare -A packages=([minisign]=minisign)

missing=()
for command in "${!packages[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "the tests need these programs, and this system has no apt-get to install them: ${missing[*]}" >&2
    exit 1
  fi
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  echo "installing what the tests drive: ${missing[*]}" >&2
  "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

cargo test --workspace "$@"

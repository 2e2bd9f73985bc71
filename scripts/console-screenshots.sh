#!/usr/bin/env bash
# Takes the web console's screenshots kept under docs/console/ (plugins, plugin, pending, audit):
# runs the console's browser test, whose checks drive every view, and keeps what it shoots.
set -euo pipefail
cd "$(dirname "$0")/.."

export AIRLOCK_CONSOLE_SCREENSHOTS="$PWD/docs/console"
./scripts/test.sh --test e2e console_browser
echo "screenshots in docs/console/"

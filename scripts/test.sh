#!/usr/bin/env bash
# The test command: installs the outside programs the tests drive, then runs every test.
#
# The tests use real peers, never stand-ins: the `minisign` tool (its keys, made with `-G`, sign
# plugins that must then load), Debian's `chromium` driven by Playwright (the web console's
# browser test), the Prometheus client's own parser of the metrics text, the CNCF distribution
# registry (`docker-registry`, each test starting its own on a free port of 127.0.0.1) that
# plugins are published to and pulled from, with Apache's `htpasswd` making the bcrypt password
# file of one that asks for basic authentication, and the ORAS project's Python SDK, an OCI
# client this project did not write, that pushes and pulls the same artifacts. A missing program is
# installed from the system's packages; the Python packages live in a virtual environment of
# their own, `target/test-venv`, made once and kept while its pins are unchanged. A test whose
# program is missing fails and names this script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package names of the programs the tests run, by command.
declare -A packages=([minisign]=minisign [chromium]=chromium [docker-registry]=docker-registry
  [htpasswd]=apache2-utils)
# The Python packages the tests import, pinned: a new version is a change made here, on purpose.
pins=(playwright==1.65.3 prometheus-client==0.26.0 oras==0.2.43)

missing=()
for command in "${!packages[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${packages[$command]}")
done
# The virtual environment is made by Debian's Python, whose `venv` module needs python3-venv
# (another `python3` on PATH, such as a version manager's, may be built without it).
system_python=/usr/bin/python3
if command -v apt-get >/dev/null 2>&1 &&
  ! "$system_python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "the tests need these programs, and this system has no apt-get to install them: ${missing[*]}" >&2
    exit 1
  fi
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 ||
      { echo "the tests need these packages; install them as root (there is no sudo): ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
  echo "installing what the tests drive: ${missing[*]}" >&2
  "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null ||
    { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null; }
fi

# The tests' Python: a virtual environment with the pinned packages, made again only when the
# pins change (its stamp holds the pins it was made with) or it is gone or broken.
python=$system_python
[[ -x $python ]] || python=$(command -v python3) ||
  { echo "the tests need python3 (3.9 or newer), and there is none" >&2; exit 1; }
venv=target/test-venv
stamp=$venv/airlock-pins
if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
  echo "making the tests' Python environment in $venv: ${pins[*]}" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$stamp"
fi
AIRLOCK_TEST_PYTHON="$PWD/$venv/bin/python"
AIRLOCK_TEST_CHROMIUM="$(command -v chromium)" ||
  { echo "the browser test needs chromium, and it is still missing after the install" >&2; exit 1; }
# Installing the package may also start the system's own registry service (on port 5000): the
# tests never use it, they run the program with a configuration of their own.
AIRLOCK_TEST_REGISTRY="$(command -v docker-registry)" ||
  { echo "the registry tests need docker-registry, and it is still missing after the install" >&2; exit 1; }
AIRLOCK_TEST_HTPASSWD="$(command -v htpasswd)" ||
  { echo "the registry tests need htpasswd (apache2-utils), and it is still missing after the install" >&2; exit 1; }
export AIRLOCK_TEST_PYTHON AIRLOCK_TEST_CHROMIUM AIRLOCK_TEST_REGISTRY AIRLOCK_TEST_HTPASSWD

cargo test --workspace "$@"

#!/usr/bin/env bash
# Installs the real Python ductor (the project users move in from) into a venv, so the
# `ductorctl import` tests read a home written by its own code, not hand-written JSON.
# Idempotent: a venv already holding the pinned version is kept (well under a second).
# Everything lives in tests/.cache/python-ductor/ (git-ignored); DUCTOR_PYDUCTOR_CACHE
# moves it. Prints the venv's python on stdout.
#
# Usage: tests/setup/install-python-ductor.sh
# Measured on a 2-core build machine: ~1 min from an empty pip cache.
set -euo pipefail

PYDUCTOR_VERSION="0.20.1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${DUCTOR_PYDUCTOR_CACHE:-$here/../.cache/python-ductor}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
venv="$cache/venv"
log() { echo "install-python-ductor: $*" >&2; }

# One caller at a time: test binaries started in parallel must not install twice.
exec 9>"$cache/.lock"
flock 9

installed() {
  [[ -x "$venv/bin/python" ]] &&
    [[ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ductor"))' 2>/dev/null)" == "$PYDUCTOR_VERSION" ]]
}

if ! installed; then
  command -v python3 >/dev/null || { log "python3 not found on PATH"; exit 1; }
  log "installing ductor $PYDUCTOR_VERSION into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ductor==$PYDUCTOR_VERSION" >&2
  installed || { log "ductor $PYDUCTOR_VERSION is not importable after install"; exit 1; }
fi
echo "$venv/bin/python"

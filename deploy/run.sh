#!/usr/bin/env bash
# Build ductor and run it in the foreground, from a fresh clone, in one command:
#
#   deploy/run.sh
#
# Builds the release binaries, writes $DUCTOR_HOME/config.toml with
# `ductorctl init` if there is none (asking questions when run on a terminal,
# writing the commented defaults otherwise), then `ductorctl up` supervises the
# services until Ctrl-C. Extra arguments go to `ductorctl up` (e.g. --detach).
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/build.sh
bin=target/release
home=${DUCTOR_HOME:-$HOME/.ductor}
if [ ! -f "$home/config.toml" ]; then
    "$bin/ductorctl" init
fi
"$bin/ductorctl" config check
exec "$bin/ductorctl" up "$@"

#!/usr/bin/env bash
# The whole ductor test suite, from a fresh clone, in one command:
#
#   tests/run.sh
#
# It installs what the tests need (the pinned agent CLIs from npm, a Synapse
# homeserver and the Python ductor 0.20.1 that `ductorctl import` moves in from,
# from PyPI in venvs, all cached under tests/.cache/; ffmpeg from
# Debian's packages), builds every
# binary, checks formatting and lints, and runs every test with real parts
# required (DUCTOR_REQUIRE_REAL=1: a missing CLI or homeserver is a failure,
# not a skip).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "installing test prerequisites"
for setup in tests/setup/install-clis.sh tests/setup/install-media.sh tests/setup/synapse.sh \
    tests/setup/install-python-ductor.sh; do
    if [ -f "$setup" ]; then
        case "$setup" in
            *synapse.sh) bash "$setup" install ;;
            *) bash "$setup" ;;
        esac
    fi
done

export DUCTOR_REQUIRE_REAL=1
export CARGO_TERM_COLOR=never

step "checking formatting"
cargo fmt --all --check

step "building every binary"
cargo build --workspace --bins --locked

step "linting"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "running the tests"
cargo test --workspace --locked --no-fail-fast

printf '\n==> all tests passed in %ss\n' "$((SECONDS - started))"

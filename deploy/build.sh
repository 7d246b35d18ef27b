#!/usr/bin/env bash
# Build ductor's release binaries into target/release/.
#
# Three cargo invocations instead of one `--workspace` build: cargo unifies the
# features of shared dependencies across everything built together, so a
# single build would compile Matrix's extra TLS backend (aws-lc) and similar
# into the Telegram gateway as well, about 0.3 MB of binary that stays resident
# for the life of an idle process. Built apart, each gateway gets only what it
# asks for; crates whose features agree are compiled once and shared.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p ductorctl -p ductor-runner -p ductor-core "$@"
cargo build --release --locked -p ductor-gateway-telegram "$@"
cargo build --release --locked -p ductor-gateway-matrix "$@"

#!/usr/bin/env bash
# Installs ffmpeg (Debian package), which the media tests use to make a
# one-minute voice note and an oversized image, and which ductor's runner
# uses to convert recordings for a transcription backend. Idempotent: an
# ffmpeg already on PATH is kept (well under a second).
# Measured on a 2-core build machine: ~25 s from Debian's mirror.
set -euo pipefail

if command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-media: ffmpeg is missing and there is no sudo" >&2; exit 1; }
    sudo="sudo"
fi
echo "install-media: installing ffmpeg" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y --no-install-recommends ffmpeg >/dev/null; then
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y --no-install-recommends ffmpeg >/dev/null
fi
command -v ffmpeg >/dev/null || { echo "install-media: ffmpeg did not install" >&2; exit 1; }

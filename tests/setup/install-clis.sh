#!/usr/bin/env bash
# Installs the pinned agent CLIs (claude, codex, gemini) that the real-CLI tests run
# against the fake model API. Idempotent: a pinned version already present is kept,
# so a second run takes well under a second. Everything lands in tests/.cache/clis/
# (git-ignored), one npm prefix per CLI so their dependency trees never clash.
#
# Usage: tests/setup/install-clis.sh          # install (or verify) all three
#        DUCTOR_CLI_CACHE=/some/dir tests/setup/install-clis.sh
# Prints one "name<TAB>absolute path to binary" line per CLI on stdout.
# Measured on a 2-core build machine: ~45 s with an empty npm cache (~870 MB of
# node_modules), ~20 s from a warm npm cache, under 2 s when already installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${DUCTOR_CLI_CACHE:-$here/../.cache/clis}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

# name | npm package | version | binary path inside the prefix
specs=(
  "claude|@anthropic-ai/claude-code|2.1.330|node_modules/.bin/claude"
  "codex|@openai/codex|0.169.0|node_modules/.bin/codex"
  "gemini|@google/gemini-cli|0.61.0|node_modules/.bin/gemini"
)

command -v npm >/dev/null || { echo "install-clis: npm not found on PATH" >&2; exit 1; }

installed_version() { # prefix package -> version from its package.json, or nothing
  local pj="$1/node_modules/$2/package.json"
  [[ -f "$pj" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

status=0
for spec in "${specs[@]}"; do
  IFS='|' read -r name pkg version bin <<<"$spec"
  prefix="$cache/$name"
  if [[ "$(installed_version "$prefix" "$pkg")" != "$version" || ! -x "$prefix/$bin" ]]; then
    echo "install-clis: installing $pkg@$version into $prefix" >&2
    mkdir -p "$prefix"
    # A package.json of our own keeps npm from walking up into the repository.
    [[ -f "$prefix/package.json" ]] || echo '{"name":"ductor-cli-'"$name"'","private":true}' >"$prefix/package.json"
    if ! npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
        "$pkg@$version" >&2; then
      echo "install-clis: npm install of $pkg@$version failed" >&2
      status=1
      continue
    fi
  fi
  if [[ "$(installed_version "$prefix" "$pkg")" != "$version" || ! -x "$prefix/$bin" ]]; then
    echo "install-clis: $pkg@$version is not usable at $prefix/$bin after install" >&2
    status=1
    continue
  fi
  printf '%s\t%s\n' "$name" "$prefix/$bin"
done
exit "$status"

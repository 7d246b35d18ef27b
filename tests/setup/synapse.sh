#!/usr/bin/env bash
# A throwaway Synapse homeserver for the Matrix gateway tests, installed from PyPI into a
# virtualenv and served on loopback only. Idempotent: a second `start` while it runs
# returns at once; a second install keeps the pinned venv.
#
# Usage: tests/setup/synapse.sh install   # venv + pinned matrix-synapse + config (once)
#        tests/setup/synapse.sh start     # install if needed, start, wait for /versions
#        tests/setup/synapse.sh stop      # stop the server started by `start`
#        tests/setup/synapse.sh status    # exit 0 when it answers
#        tests/setup/synapse.sh env       # print SYNAPSE_URL=... and SYNAPSE_SECRET=...
# `start` and `env` print on stdout:
#   SYNAPSE_URL=http://127.0.0.1:<port>
#   SYNAPSE_SECRET=<registration shared secret>
# Everything lives in tests/.cache/synapse/ (git-ignored); DUCTOR_SYNAPSE_CACHE moves it.
# The port is chosen free once and kept (DUCTOR_SYNAPSE_PORT fixes it). A started server
# keeps running after the tests (the next run reuses it in well under a second); `stop` ends it.
# Test accounts use bcrypt_rounds 4, so password logins take milliseconds.
# The server: server_name `localhost`, sqlite, client API only (no federation listener,
# empty key-server and federation whitelists), `enable_registration: false` (tests register
# with the shared secret), every rc_* rate limit very high, presence/URL previews/metrics off.
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${DUCTOR_SYNAPSE_CACHE:-$here/../.cache/synapse}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
venv="$cache/venv"
data="$cache/data"
config="$data/homeserver.yaml"
log() { echo "synapse.sh: $*" >&2; }

# One caller at a time: test binaries started in parallel must not install or start twice.
exec 9>"$cache/.lock"
flock 9

python_bin() {
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null; then echo "$candidate"; return; fi
  done
  log "python3 not found on PATH"; exit 1
}

install_venv() {
  if [[ -x "$venv/bin/python" ]] &&
    [[ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("matrix-synapse"))' 2>/dev/null)" == "$SYNAPSE_VERSION" ]]; then
    return
  fi
  log "installing matrix-synapse $SYNAPSE_VERSION into $venv"
  "$(python_bin)" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
    "matrix-synapse==$SYNAPSE_VERSION" >&2
}

free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

random_token() {
  "$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))'
}

# The config is rewritten on every call (so edits here take effect); the port, the
# secrets and the signing key are generated once and kept.
write_config() {
  mkdir -p "$data/media_store"
  [[ -f "$data/port" ]] || echo "${DUCTOR_SYNAPSE_PORT:-$(free_port)}" >"$data/port"
  local name
  for name in secret macaroon form; do
    [[ -f "$data/$name" ]] || (umask 077 && random_token >"$data/$name")
  done
  local port secret
  port="$(cat "$data/port")"
  secret="$(cat "$data/secret")"
  cat >"$data/log.config" <<EOF
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: $data/homeserver.log
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
EOF
  local rate='{per_second: 100000, burst_count: 100000}'
  cat >"$config" <<EOF
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$port/"
pid_file: "$data/homeserver.pid"
listeners:
  - port: $port
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "$data/homeserver.db"
log_config: "$data/log.config"
media_store_path: "$data/media_store"
signing_key_path: "$data/localhost.signing.key"
registration_shared_secret: "$secret"
macaroon_secret_key: "$(cat "$data/macaroon")"
form_secret: "$(cat "$data/form")"
# Test accounts only: cheap password hashing keeps logins fast.
bcrypt_rounds: 4
enable_registration: false
report_stats: false
enable_metrics: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
allow_public_rooms_over_federation: false
presence:
  enabled: false
url_preview_enabled: false
max_upload_size: 50M
rc_message: $rate
rc_registration: $rate
rc_registration_token_validity: $rate
rc_room_creation: $rate
rc_reports: $rate
rc_admin_redaction: $rate
rc_joins_per_room: $rate
rc_3pid_validation: $rate
rc_invites:
  per_room: $rate
  per_user: $rate
  per_issuer: $rate
rc_joins:
  local: $rate
  remote: $rate
rc_login:
  address: $rate
  account: $rate
  failed_attempts: $rate
rc_key_requests: $rate
rc_media_create: $rate
rc_delayed_event_mgmt: $rate
rc_presence:
  per_user: $rate
EOF
  [[ -f "$data/localhost.signing.key" ]] ||
    (cd "$data" && "$venv/bin/python" -m synapse.app.homeserver -c "$config" --generate-keys >&2)
}

url() { echo "http://127.0.0.1:$(cat "$data/port")"; }

answers() {
  "$venv/bin/python" - "$(url)/_matrix/client/versions" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
EOF
}

print_env() {
  echo "SYNAPSE_URL=$(url)"
  echo "SYNAPSE_SECRET=$(cat "$data/secret")"
}

start() {
  install_venv
  local before after
  before="$(md5sum "$config" 2>/dev/null || true)"
  write_config
  after="$(md5sum "$config")"
  if answers; then
    if [[ "$before" == "$after" ]]; then print_env; return; fi
    log "the config changed; restarting"
    stop
  fi
  if [[ -f "$data/homeserver.pid" ]] && kill -0 "$(cat "$data/homeserver.pid")" 2>/dev/null; then
    log "a stale server (pid $(cat "$data/homeserver.pid")) does not answer; stopping it"
    stop
  fi
  log "starting on $(url)"
  # Close the lock descriptor: the daemon must not hold the lock for its lifetime.
  (cd "$data" && "$venv/bin/python" -m synapse.app.homeserver -c "$config" --daemonize >&2 9>&-)
  for _ in $(seq 1 300); do
    if answers; then print_env; return; fi
    sleep 0.1
  done
  log "no answer from $(url) after 30 s; see $data/homeserver.log"
  tail -20 "$data/homeserver.log" >&2 || true
  exit 1
}

stop() {
  local pidfile="$data/homeserver.pid"
  [[ -f "$pidfile" ]] || return 0
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

case "${1:-start}" in
  install) install_venv; write_config ;;
  start) start ;;
  stop) stop ;;
  status) [[ -f "$config" ]] && answers ;;
  env) [[ -f "$config" ]] || { log "not installed"; exit 1; }; print_env ;;
  *) log "unknown subcommand ${1} (install|start|stop|status|env)"; exit 2 ;;
esac

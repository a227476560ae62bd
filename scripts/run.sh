#!/usr/bin/env bash
# `make run`: start embedded PostgreSQL/Redis for what DATABASE_URL / REDIS_URL (or REDIS_HOST) leave unset,
# migrate, seed, serve.
# Ctrl-C stops gunicorn gracefully, then the embedded services (their data stays in .local/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export APP_ENV="${APP_ENV:-development}"
# No load balancer in front of a development server: stop at once instead of draining.
export SHUTDOWN_DRAIN_DELAY="${SHUTDOWN_DRAIN_DELAY:-0}"

started=0
if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}${REDIS_HOST:-}" ]; then
  exports=$($PY -m scripts.devservices up)
  eval "$exports"
  started=1
fi

server=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    # Give in-flight requests a moment, but stop the embedded services even if gunicorn lingers:
    # a supervisor that sends SIGKILL a few seconds after SIGTERM must not leave PostgreSQL running.
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$server" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ "$started" = 1 ]; then $PY -m scripts.devservices down || true; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

$PY init_db.py
.venv/bin/gunicorn -c gunicorn.conf.py &
server=$!
wait "$server"

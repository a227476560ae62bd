#!/usr/bin/env bash
# `make run`: start embedded PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset, migrate, seed, serve.
# Ctrl-C stops gunicorn gracefully, then the embedded services (their data stays in .local/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export APP_ENV="${APP_ENV:-development}"

started=0
if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  exports=$($PY -m scripts.devservices up)
  eval "$exports"
  started=1
fi

server=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  if [ "$started" = 1 ]; then $PY -m scripts.devservices down || true; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

$PY init_db.py
.venv/bin/gunicorn -c gunicorn.conf.py &
server=$!
wait "$server"

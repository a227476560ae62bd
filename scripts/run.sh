#!/usr/bin/env bash
# `make run`: load .flaskenv/.env (as `flask` does; the environment wins), start embedded PostgreSQL/Redis for what
# DATABASE_URL / REDIS_URL (or REDIS_HOST) leave unset (on this checkout's own ports), migrate, seed, serve on PORT
# (8000, or a free port when another checkout holds it). `make env` / `make shell` in a second terminal find all of
# it through .local/services.json; `make stop` stops it if this script was killed.
# Ctrl-C stops gunicorn gracefully, then the embedded services (their data stays in .local/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
eval "$($PY -m scripts.devservices dotenv)"
export APP_ENV="${APP_ENV:-development}"
# No load balancer in front of a development server: stop at once instead of draining.
export SHUTDOWN_DRAIN_DELAY="${SHUTDOWN_DRAIN_DELAY:-0}"

# Refuses when this checkout's gunicorn still runs (a killed `make run`): `make stop` first.
PORT=$($PY -m scripts.devservices serve-port)
export PORT

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
# Its own pid file and control socket (gunicorn's default socket is one per user, shared by every checkout).
.venv/bin/gunicorn -c gunicorn.conf.py --pid .local/gunicorn.pid --control-socket .local/gunicorn.ctl &
server=$!
wait "$server"

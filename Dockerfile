# syntax=docker/dockerfile:1
# SQAL backend and ESP32 simulator images.
#
#   docker build -t sqal-backend:"$(python -m scripts.version)" .          # backend (default, last stage)
#   docker build --target simulator -t sqal-simulator:"$(python -m scripts.version)" .   # simulator
#
# Stages: builder (compilers, builds the virtualenv) -> runtime (slim, no compilers, non-root appuser 1000)
#         -> simulator | backend. Only requirements.lock (runtime, hash-locked) is installed: dev tools never reach an image.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Build tools for any dependency without a wheel for this platform; they stay in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-deps --require-hashes -r /tmp/requirements.lock && pip check

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1

# /var/lib/sqal: device tokens shared by the init job (writes) and the simulator (reads) in docker-compose.
RUN groupadd --gid 1000 appuser \
    && useradd --uid 1000 --gid appuser --no-create-home --home-dir /app --shell /usr/sbin/nologin appuser \
    && install -d -o appuser -g appuser -m 0750 /var/lib/sqal

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app

# ---------------------------------------------------------------------------------------------------------------
FROM runtime AS simulator

# The simulator speaks the wire protocol only: it needs no backend code.
COPY --chown=root:root simulator/ /app/simulator/
# It runs from a directory appuser owns; its on-disk outbox (unacked samples) lives in the volume there.
ENV PYTHONPATH=/app \
    SIMULATOR_OUTBOX=/var/lib/sqal-simulator/outbox.sqlite3
RUN install -d -o appuser -g appuser -m 0750 /var/lib/sqal-simulator
WORKDIR /var/lib/sqal-simulator
VOLUME ["/var/lib/sqal-simulator"]

USER 1000:1000
ENTRYPOINT ["python", "-m", "simulator"]

# ---------------------------------------------------------------------------------------------------------------
FROM runtime AS backend

# Code is owned by root and read-only for appuser: a compromised worker cannot rewrite the service.
COPY --chown=root:root backend/ /app/backend/
COPY --chown=root:root migrations/ /app/migrations/
COPY --chown=root:root gunicorn.conf.py init_db.py app.py /app/

# PROMETHEUS_MULTIPROC_DIR is left unset: gunicorn.conf.py then uses a fresh private directory under /tmp per
# master, so a restarted container never inherits a dead worker's metric files.
# OPS_PORT: /metrics and the probes' details on their own listener (the API port answers /metrics with 404).
ENV HOST=0.0.0.0 \
    PORT=8000 \
    OPS_PORT=9464 \
    APP_ENV=production

EXPOSE 8000 9464
USER 1000:1000

# Liveness only (no dependency call): an unreachable database must not get the container killed.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=2).status != 200)"]

ENTRYPOINT ["gunicorn", "-c", "gunicorn.conf.py", "backend:create_app()"]

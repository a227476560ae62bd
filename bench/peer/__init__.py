"""A peer for scenario 1: the products read as a user would build it from the usual parts (issue 17).

Flask + Flask-SQLAlchemy on the same `products` table, instrumented with prometheus-flask-exporter (gunicorn
multiprocess), OpenTelemetry's Flask and SQLAlchemy instrumentations (SDK BatchSpanProcessor, OTLP/HTTP exporter)
and a python-json-logger access line with trace ids. Not part of the app: nothing here imports `backend`, and
`backend` never imports this.

    PEER_INSTRUMENTED=true DATABASE_URL=... gunicorn -c bench/peer/gunicorn_conf.py
"""

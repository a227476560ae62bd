"""Property-based API fuzzing with schemathesis against the real gunicorn and its live /openapi.json."""

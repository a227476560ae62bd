"""The reference's entry points, on the same app as `backend:create_app()`.

- `gunicorn --bind 0.0.0.0:5000 --workers 4 app:app` — gunicorn reads ./gunicorn.conf.py by default, so JSON logs,
  multiprocess metrics and per-worker tracing are the same as with `gunicorn -c gunicorn.conf.py`;
- `python app.py` — the development server on HOST:PORT, with the debugger and reloader when FLASK_DEBUG=true;
  it reads `.flaskenv` / `.env` first, as `flask` does (the environment wins; FLASK_SKIP_DOTENV=1 skips them);
- `flask --app app …` — the same CLI as `flask --app backend …`.
"""

from __future__ import annotations

from apiflask import APIFlask
from flask.cli import load_dotenv
from flask.helpers import get_load_dotenv

from backend import create_app
from backend.base.config import ConfigError


def _build() -> APIFlask:
    try:
        return create_app()
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None


if __name__ == "__main__":
    load_dotenv(load_defaults=get_load_dotenv())  # not under `gunicorn app:app`: production reads no .env

app = _build()

if __name__ == "__main__":
    settings = app.config["SETTINGS"]
    app.run(host=settings.host, port=settings.port, debug=settings.flask_debug)

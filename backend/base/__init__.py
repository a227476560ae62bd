"""The base layer, below observability and core: the settings (`config`, `config_values`), the error types and
handlers (`errors`), the SQLAlchemy extension (`orm`) and the shape of the app's extension objects (`extension`).
It imports only itself."""

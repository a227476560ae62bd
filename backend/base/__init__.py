"""The base layer, below observability and core: the settings (`config`, `config_values`) and the error types and
handlers (`errors`). Besides `backend.extensions`, it imports only itself."""

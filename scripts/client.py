"""Generate the Python client of the API from docs/openapi.json with openapi-python-client.

`python -m scripts.client [OUTPUT]` (`make client`) writes an installable project (default `clients/python`,
not committed: it is regenerated from the committed spec); the tests generate the bare package into a temporary
directory and drive the real server with it. Warnings of the generator are errors: a spec it cannot fully turn
into a client is a broken contract.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.devservices import REPO_ROOT

SPEC = REPO_ROOT / "docs" / "openapi.json"
PACKAGE = "sqal_client"
CONFIG = f"project_name_override: sqal-client\npackage_name_override: {PACKAGE}\n"
BIN = Path(sys.executable).parent


def generate(output: Path, meta: str = "uv") -> Path:
    """Write the client to `output` (`meta` "none": the bare package; "uv": a project with a pyproject.toml)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        config.write(CONFIG)
        config.flush()
        done = subprocess.run(
            [
                str(BIN / "openapi-python-client"),
                "generate",
                "--path",
                str(SPEC),
                "--config",
                config.name,
                "--meta",
                meta,
                "--output-path",
                str(output),
                "--overwrite",
                "--fail-on-warning",
            ],
            check=False,
            capture_output=True,
            text=True,
            # The generator formats its output with the ruff on PATH: this environment's.
            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        )
    if done.returncode != 0:
        raise RuntimeError(f"openapi-python-client failed on {SPEC}:\n{done.stdout}{done.stderr}")
    return output


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else REPO_ROOT / "clients" / "python")
    try:
        generate(target)
    except RuntimeError as exc:
        sys.exit(str(exc))
    print(f"client written to {target} (pip install {target})")

"""Dockerfile and .dockerignore, checked statically (no Docker engine on these machines)."""

from __future__ import annotations

import json
import re

from tests.stack.stackfiles import DOCKERFILE, PINNED_IMAGE, REPO, parse_dockerfile, stage

COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cpp|libpq-dev|python3-dev)\b")


def test_stages_and_default_target() -> None:
    _, stages = parse_dockerfile()
    assert [s.name for s in stages] == ["builder", "runtime", "simulator", "backend"]
    assert stage("simulator").base == stage("backend").base == "runtime"


def test_base_images_are_pinned_debian_slim() -> None:
    global_args, stages = parse_dockerfile()
    for s in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], s.base)
        if base in {other.name for other in stages}:
            continue
        assert PINNED_IMAGE.fullmatch(base), f"stage {s.name}: {base} is not pinned"
        assert re.search(r"-slim-(bookworm|trixie)$", base), f"stage {s.name}: {base} is not Debian slim"


def test_no_compiler_reaches_a_final_image() -> None:
    assert COMPILERS.search(" ".join(stage("builder").args("RUN"))), "the builder is where compilers belong"
    for name in ("runtime", "simulator", "backend"):
        for run in stage(name).args("RUN"):
            assert not re.search(r"apt-get install|apk add|pip install", run), f"{name}: installs software: {run}"
    copies = stage("runtime").args("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], "only the virtualenv crosses from the builder"


def test_only_runtime_requirements_are_installed_from_the_hash_lock() -> None:
    text = DOCKERFILE.read_text()
    installs = [run for run in stage("builder").args("RUN") if "pip install" in run]
    assert installs == ["pip install --no-deps --require-hashes -r /tmp/requirements.lock && pip check"]
    assert "requirements-dev" not in text


def test_images_run_as_appuser_1000() -> None:
    assert any("useradd --uid 1000" in run and "appuser" in run for run in stage("runtime").args("RUN"))
    for name in ("simulator", "backend"):
        assert stage(name).args("USER")[-1] in {"1000", "1000:1000", "appuser"}, name


def test_backend_entrypoint_and_healthcheck() -> None:
    backend = stage("backend")
    assert json.loads(backend.args("ENTRYPOINT")[-1]) == ["gunicorn", "-c", "gunicorn.conf.py", "backend:create_app()"]
    healthcheck = backend.args("HEALTHCHECK")[-1]
    assert "http://127.0.0.1:8000/health/live" in healthcheck
    exposed = " ".join(backend.args("EXPOSE")).split()
    assert "8000" in exposed
    environment = " ".join(backend.args("ENV"))
    assert "HOST=0.0.0.0" in environment
    # The image serves /metrics on its operations port only (the API port answers 404).
    assert "OPS_PORT=9464" in environment
    assert "9464" in exposed


def test_simulator_image_carries_no_backend_code() -> None:
    simulator = stage("simulator")
    assert json.loads(simulator.args("ENTRYPOINT")[-1]) == ["python", "-m", "simulator"]
    assert all("backend" not in copy for copy in simulator.args("COPY"))


def copied_sources() -> set[str]:
    """Build-context paths the Dockerfile COPYs (not --from another stage)."""
    sources: set[str] = set()
    for s in parse_dockerfile()[1]:
        for copy in s.args("COPY"):
            if "--from=" in copy:
                continue
            parts = [part for part in copy.split() if not part.startswith("--")]
            sources |= {part.rstrip("/") for part in parts[:-1]}
    return sources


def test_copied_files_exist_and_pass_the_dockerignore() -> None:
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "**", "the context starts empty and lists what it lets in"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for source in copied_sources():
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert source in allowed, f"COPY {source} is excluded by .dockerignore"
    assert {"**/.env", "**/__pycache__"} <= set(rules)
    assert not allowed & {"tests", ".git", ".venv", ".env", "requirements-dev.txt", "requirements-dev.lock"}

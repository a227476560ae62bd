"""The schemathesis command line both fuzz profiles run against a live server, and the API key it sends.

Schemathesis runs as a subprocess (`schemathesis run`): its phases (examples, coverage, fuzzing, stateful), its
checks and its report are the CLI's, and neither its warnings nor Hypothesis' global state leak into the pytest
session (which turns every warning into an error).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from apiflask import APIFlask

from backend.core import auth
from scripts.devservices import REPO_ROOT

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
API_KEY_VARIABLE = "SQAL_FUZZ_API_KEY"  # read by schemathesis.toml
HOOKS_MODULE = "tests.fuzz.hooks"

# Operations left out of the run, each with the reason. Nothing else is excluded.
EXCLUDED_PATHS = {
    # Fails on purpose: any probability > 0 answers 500 (or 504), which not_a_server_error would report.
    "/error": "chaos endpoint: answers 500/504 by design",
    # Sleeps up to 30 s per call (and SLOW_ENDPOINT_DELAY, 5 s, without ?delay=): a run would spend minutes asleep.
    "/slow": "chaos endpoint: sleeps up to 30 s by design",
}


@dataclass(frozen=True)
class Profile:
    """How hard to fuzz: examples per operation and phases."""

    name: str
    max_examples: int
    phases: tuple[str, ...]
    request_timeout: float = 10.0


QUICK = Profile("quick", max_examples=15, phases=("examples", "coverage", "fuzzing"))
DEEP = Profile("deep", max_examples=300, phases=("examples", "coverage", "fuzzing", "stateful"))
PROFILES = {profile.name: profile for profile in (QUICK, DEEP)}


def create_fuzz_key(app: APIFlask) -> str:
    """A fresh API key holding every scope, so that writes are exercised rather than refused."""
    with app.app_context():
        _row, key = auth.create_key("schemathesis", list(auth.scopes()))
        return key


def command(base_url: str, profile: Profile, work_dir: Path, seed: int | None = None) -> list[str]:
    """The `schemathesis run` invocation: every check, this profile's examples and phases."""
    args = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG_FILE),
        "run",
        f"{base_url}/openapi.json",
        "--url",
        base_url,
        "--checks",
        "all",
        "--phases",
        ",".join(profile.phases),
        "--max-examples",
        str(profile.max_examples),
        "--request-timeout",
        str(profile.request_timeout),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "junit,ndjson",
        "--report-dir",
        str(work_dir / "report"),
    ]
    for path in EXCLUDED_PATHS:
        args += ["--exclude-path", path]
    if seed is not None:
        args += ["--seed", str(seed)]
    return args


def run(
    args: list[str], api_key: str, work_dir: Path, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run schemathesis with `api_key` in `work_dir` (crash cache, reports); its output goes to schemathesis.log."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        API_KEY_VARIABLE: api_key,
        "SCHEMATHESIS_HOOKS": HOOKS_MODULE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env, cwd=work_dir)
    (work_dir / "schemathesis.log").write_text(result.stdout + result.stderr)
    return result

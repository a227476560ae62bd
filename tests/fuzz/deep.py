"""Deep schemathesis run (`make fuzz`): many more examples per operation and the stateful (links) phase.

Starts what the tests start — the session PostgreSQL database and Redis (DATABASE_URL / REDIS_URL, else embedded),
migrated to head, and the real gunicorn with AUTH_MODE=apikey — creates an API key with every scope, and runs
`schemathesis run` with every check. Exit status: schemathesis' own (0 = no failure).

    python -m tests.fuzz.deep [--profile deep|quick] [--max-examples N] [--seed N]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from flask_migrate import upgrade

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from scripts.devservices import REPO_ROOT
from scripts.services import session_services
from tests.conftest import truncate_all
from tests.fuzz import runner
from tests.fuzz.conftest import FUZZ_SERVER_ENV
from tests.support.server import GunicornServer

REPORT_ROOT = REPO_ROOT / ".local" / "fuzz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(runner.PROFILES), default="deep")
    parser.add_argument("--max-examples", type=int, help="examples per operation (overrides the profile)")
    parser.add_argument("--seed", type=int, help="Hypothesis seed, to replay a run")
    options = parser.parse_args(argv)
    profile = runner.PROFILES[options.profile]
    if options.max_examples:
        profile = replace(profile, max_examples=options.max_examples)

    REPORT_ROOT.mkdir(parents=True, exist_ok=True)
    with session_services() as services:
        settings = Settings.from_env(
            {}, app_env="test", database_url=services.database_url, redis_url=services.redis_url
        )
        app = create_app(settings)
        with app.app_context():
            upgrade()
        truncate_all(app)
        env = {"DATABASE_URL": services.database_url, "REDIS_URL": services.redis_url, **FUZZ_SERVER_ENV}
        with GunicornServer(env, REPORT_ROOT, workers=2) as server:
            key = runner.create_fuzz_key(app)
            args = runner.command(server.base_url, profile, REPORT_ROOT, options.seed)
            result = runner.run(args, key, REPORT_ROOT)
            server_log = server.stdout_path
        with app.app_context():
            db.engine.dispose()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    print(f"\nlog and reports in {REPORT_ROOT}, server log {server_log}", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())

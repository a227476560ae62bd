"""init_db.py migrates then seeds; running it twice still leaves the 10 sample products."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg2

from scripts.devservices import REPO_ROOT
from scripts.services import TestServices, admin_dsn, create_database, drop_database, with_database


def test_init_db_is_idempotent(services: TestServices) -> None:
    name = f"sqal_initdb_{uuid.uuid4().hex[:8]}"
    create_database(services.server_url, name)
    url = with_database(services.server_url, name)
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": services.redis_url, "APP_ENV": "test"}
    try:
        for _ in range(2):
            subprocess.run([sys.executable, "init_db.py"], cwd=REPO_ROOT, env=env, check=True, timeout=120)
        conn = psycopg2.connect(admin_dsn(url).rsplit("/", 1)[0] + f"/{name}")
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT count(*), count(DISTINCT name) FROM products")
                assert cursor.fetchone() == (10, 10)
        finally:
            conn.close()
    finally:
        drop_database(services.server_url, name)

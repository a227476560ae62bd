"""Dev/prod parity: the tests run at least once on the Redis major that docker-compose runs."""

from __future__ import annotations

import os
import re

import pytest
import redis

from scripts.services import TestServices
from tests.stack.stackfiles import compose_services


def compose_redis_major() -> int:
    image = compose_services()["redis"]["image"]
    match = re.fullmatch(r"redis:(\d+)\.[\w.-]+", image)
    assert match, f"compose's Redis image has no explicit version: {image}"
    return int(match.group(1))


def test_session_redis_is_composes_major(services: TestServices) -> None:
    client = redis.Redis.from_url(services.redis_url)
    try:
        running = str(client.info("server")["redis_version"])
    finally:
        client.close()
    wanted = compose_redis_major()
    if int(running.split(".")[0]) != wanted:
        message = (
            f"the tests run on Redis {running}, compose runs Redis {wanted}: set REDIS_URL to a Redis {wanted} "
            "(the machine's, as .ci/run does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

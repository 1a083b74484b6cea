"""Django's setup imports the configured Redis backend (redis-py and the backend's modules: 0.1 s
and more), so that the first write of a process pays no import; the in-memory broker imports
none of redis-py. Each case is a fresh Python process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..services import example_process

PROBE = """
import json, sys
import django

django.setup()


def loaded():
    return {
        name for name in sys.modules
        if name.split(".")[0] == "redis" or name.startswith("gql_pubsub.broker.backends.redis")
    }


at_setup = loaded()
if sys.argv[1] == "publish":
    from gql_pubsub import publish

    publish("startup-imports-probe", "custom", {"n": 1})
print(json.dumps({"setup": sorted(at_setup), "publish": sorted(loaded() - at_setup)}))
"""


def probe(broker_url: str | None, *, publish: bool) -> dict[str, Any]:
    """What of redis-py and the Redis backend a fresh process has after setup, and what its
    first publish imported on top of that."""
    done = example_process("-c", PROBE, "publish" if publish else "setup", redis_url=broker_url)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_setup_imports_the_redis_backend_so_the_first_publish_imports_nothing(
    redis_url: str,
) -> None:
    found = probe(redis_url, publish=True)
    assert {
        "redis",
        "redis.asyncio",
        "gql_pubsub.broker.backends.redis",
        "gql_pubsub.broker.backends.redis.publisher",
        "gql_pubsub.broker.backends.redis.pubsub",
    } <= set(found["setup"])
    assert found["publish"] == []


def test_setup_imports_the_cluster_backend_for_a_cluster_url() -> None:
    found = probe("redis+cluster://127.0.0.1:7000", publish=False)
    assert {"redis.cluster", "gql_pubsub.broker.backends.redis.cluster"} <= set(found["setup"])


@pytest.mark.parametrize("url", [None, "memory://"], ids=["no-url", "memory-url"])
def test_the_in_memory_broker_imports_no_redis_at_setup_or_when_it_publishes(
    url: str | None,
) -> None:
    assert probe(url, publish=True) == {"setup": [], "publish": []}

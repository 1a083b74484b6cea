"""``GC_FREEZE_ON_STARTUP`` and ``GC_THRESHOLD`` are applied by the ASGI lifespan startup, in a
fresh Python process that drives the lifespan protocol itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from ..services import ROOT, scaled

GC_PROBE = """
import asyncio, gc, json, os, sys

os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
import django.conf

django.conf.settings.GQL_PUBSUB = {**django.conf.settings.GQL_PUBSUB, **json.loads(sys.argv[1])}

import strawberry


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


async def main():
    from gql_pubsub.asgi import get_asgi_application

    app = get_asgi_application(strawberry.Schema(query=Query))
    before = {"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count()}
    inbox, outbox = asyncio.Queue(), asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    lifespan = asyncio.create_task(app(scope, inbox.get, outbox.put))

    async def reply():  # the app's answer, or its exception if the lifespan crashed
        answer = asyncio.ensure_future(outbox.get())
        await asyncio.wait({answer, lifespan}, timeout=30, return_when="FIRST_COMPLETED")
        if not answer.done():
            answer.cancel()
            lifespan.result() if lifespan.done() else sys.exit("no lifespan answer in 30s")
        return answer.result()

    await inbox.put({"type": "lifespan.startup"})
    started = await reply()
    after = {
        "threshold": gc.get_threshold(),
        "frozen": gc.get_freeze_count(),
        "unfrozen": len(gc.get_objects()),
    }
    await inbox.put({"type": "lifespan.shutdown"})
    stopped = await reply()
    await asyncio.wait_for(lifespan, 30)
    print(json.dumps({
        "before": before, "after": after,
        "lifespan": [started["type"], stopped["type"]],
    }))


asyncio.run(main())
"""


def asgi_startup_gc(**overrides: Any) -> dict[str, Any]:
    """Run an ASGI lifespan startup in a fresh Python with GQL_PUBSUB ``overrides``; returns the
    GC thresholds and freeze counts before and after the startup."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example.settings",
        "REDIS_URL": os.environ["REDIS_URL"],
        "DEBUG": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", GC_PROBE, json.dumps(overrides)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["lifespan"] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    return report


# -- GC tuning at ASGI startup --------------------------------------------------------------


def test_asgi_startup_freezes_the_heap_and_raises_the_gc_thresholds_by_default() -> None:
    """Defaults: after lifespan startup the threshold is (5000, 20, 20) and objects are frozen."""
    report = asgi_startup_gc()
    assert report["before"]["frozen"] == 0
    assert report["before"]["threshold"] != [5000, 20, 20]
    assert report["after"]["threshold"] == [5000, 20, 20]
    assert report["after"]["frozen"] > 0


def test_the_startup_freeze_comes_after_the_broker_backends_modules_are_loaded() -> None:
    """The backend (redis-py and the Redis backend's modules, imported when the process broker
    is built) is loaded before the freeze: the collector is left a few hundred objects, not the
    ~15,000 of modules imported just after it."""
    report = asgi_startup_gc()
    assert report["after"]["frozen"] > 0
    assert report["after"]["unfrozen"] < 2_000


def test_gc_threshold_none_keeps_pythons_default_thresholds() -> None:
    """GC_THRESHOLD = None: lifespan startup leaves Python's own thresholds alone."""
    report = asgi_startup_gc(GC_THRESHOLD=None)
    if sys.version_info < (3, 13):
        assert report["before"]["threshold"] == [700, 10, 10]
    assert report["after"]["threshold"] == report["before"]["threshold"]
    assert report["after"]["frozen"] > 0  # the other setting still applies


def test_gc_freeze_on_startup_false_freezes_nothing() -> None:
    """GC_FREEZE_ON_STARTUP = False: lifespan startup leaves the freeze count at 0."""
    report = asgi_startup_gc(GC_FREEZE_ON_STARTUP=False)
    assert report["after"]["frozen"] == 0
    assert report["after"]["threshold"] == [5000, 20, 20]  # the other setting still applies

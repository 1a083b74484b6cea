"""Relay the outbox: publish committed events that could not be published when they were written.

Every ASGI server process already runs a relay; run this where events are written by processes
without one (Celery workers, cron jobs) and no server runs, or to drain the outbox by hand.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gql_pubsub.conf import get_settings
from gql_pubsub.publishing.outbox.forwarder import pending, relay_once, release_lease
from gql_pubsub.publishing.outbox.health import RECONNECT_GRACE


class Command(BaseCommand):
    help = "Publish the events waiting in gql_pubsub's outbox, in order, until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once",
            action="store_true",
            help="Exit when the outbox is empty (waiting at most --timeout seconds for Redis).",
        )
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args: Any, once: bool, timeout: float, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        interval = get_settings().RELAY_INTERVAL
        deadline = time.monotonic() + timeout + RECONNECT_GRACE
        relayed = 0
        try:
            while not stop.is_set():
                relayed += relay_once()
                if once and (not pending() or time.monotonic() > deadline):
                    break
                stop.wait(interval)
        finally:
            release_lease()
        left = pending()
        self.stdout.write(f"Relayed {relayed} event(s); {left} waiting.")
        if once and left:
            raise SystemExit(1)

#!/usr/bin/env python3
"""Saves per second of a publishable model: the write path's cost, with and without the outbox.

    python benchmarks/save_rate.py [--saves 3000] [--rounds 5]

One process, the Redis broker at $REDIS_URL, a fresh SQLite file (or a new database on
$DATABASE_URL's PostgreSQL server). Three ways of saving one chat message, in alternating blocks
of `--saves`, `--rounds` times each, medians printed as JSON:
- `outbox`: `Message.objects.create()`, the library's path (the row and its outbox row in one
  transaction, published after the commit; on PostgreSQL one statement for both rows);
- `outbox_with_receiver`: the same with another app's `post_save` receiver (which does nothing)
  connected, so that the save cannot be one statement (on PostgreSQL: two round trips);
- `direct`: what publishing cost without the outbox: an autocommit INSERT of the same row, then
  the same event published at once (`publish_now`), as before the outbox existed.
`ratio` is outbox / direct, the median of each round's ratio (blocks next to each other in time
share the machine's mood); `ratio_with_receiver` the same for `outbox_with_receiver`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saves", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from tests.services import database_service

    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    with database_service() as database_url:  # a new database on $DATABASE_URL's server
        os.environ["DATABASE_URL"] = database_url
        try:
            print(json.dumps(measure(args.saves, args.rounds)))
        finally:
            from django.db import connections

            connections.close_all()


def measure(saves: int, rounds: int) -> dict[str, object]:
    import statistics

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import models
    from django.db.models.signals import post_save

    from example.chat.models import Correspondence, Message
    from gql_pubsub.core.events import EventKind
    from gql_pubsub.publishing.outbox.writer import publish_now

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="bench")
    correspondence = Correspondence.objects.create(title="bench")

    def outbox(n: int) -> None:
        Message.objects.create(correspondence=correspondence, author=user, body=str(n))

    def direct(n: int) -> None:
        message = Message(correspondence=correspondence, author=user, body=str(n))
        message.publish_enabled = False  # no outbox row: the receivers leave it alone
        models.Model.save(message)  # autocommit: one INSERT
        publish_now(message.get_publish_channels(), message.publish_event(EventKind.CREATED))

    def another(sender: object, **kw: object) -> None:
        """Another app's receiver."""

    def outbox_with_receiver(n: int) -> None:
        post_save.connect(another, sender=Message, dispatch_uid="bench_another")
        try:
            outbox(n)
        finally:
            post_save.disconnect(sender=Message, dispatch_uid="bench_another")

    ways = {"outbox": outbox, "outbox_with_receiver": outbox_with_receiver, "direct": direct}
    for save in ways.values():  # warm up connections and caches
        for n in range(100):
            save(n)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, save in ways.items():
            started = time.perf_counter()
            for n in range(saves):
                save(n)
            rates[name].append(saves / (time.perf_counter() - started))
    medians = {name: round(statistics.median(r)) for name, r in rates.items()}
    return {
        "database": django.db.connection.vendor,
        "saves": saves,
        "rounds": rounds,
        "saves_per_s": medians,
        "ratio": round_ratio(rates["outbox"], rates["direct"]),
        "ratio_with_receiver": round_ratio(rates["outbox_with_receiver"], rates["direct"]),
    }


def round_ratio(rates: list[float], direct: list[float]) -> float:
    """The median of each round's ratio of ``rates`` to ``direct`` (rounds share the machine's
    mood; a ratio of medians would mix rounds)."""
    import statistics

    return round(statistics.median(a / b for a, b in zip(rates, direct, strict=True)), 3)


if __name__ == "__main__":
    main()

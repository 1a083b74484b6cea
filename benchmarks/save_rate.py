#!/usr/bin/env python3
"""Saves per second of a publishable model: the write path's cost (outbox row, PUBLISH, DELETE).

    python benchmarks/save_rate.py [--saves 3000]

One process, `Message.objects.create()` in a loop with the Redis broker at $REDIS_URL, on a
fresh SQLite file (or a new database on $DATABASE_URL's PostgreSQL server). Run it on two
checkouts to compare; prints saves/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saves", type=int, default=3000)
    args = parser.parse_args()
    given = os.environ.get("DATABASE_URL", "")
    created = None
    if given.startswith(("postgres://", "postgresql://")):
        import psycopg

        created = f"gql_pubsub_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{created}"')
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(given)._replace(path=f"/{created}"))
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/db.sqlite3"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    try:
        print(json.dumps(measure(args.saves)))
    finally:
        if created:
            from django.db import connections

            connections.close_all()
            with psycopg.connect(given, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')


def measure(saves: int) -> dict[str, object]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from example.chat.models import Correspondence, Message

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(username="bench")
    correspondence = Correspondence.objects.create(title="bench")
    for _ in range(100):  # warm up connections and caches
        Message.objects.create(correspondence=correspondence, author=user, body="warm")
    started = time.perf_counter()
    for n in range(saves):
        Message.objects.create(correspondence=correspondence, author=user, body=str(n))
    elapsed = time.perf_counter() - started
    vendor = django.db.connection.vendor
    return {"database": vendor, "saves": saves, "saves_per_s": round(saves / elapsed)}


if __name__ == "__main__":
    main()

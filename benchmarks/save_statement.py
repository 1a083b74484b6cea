#!/usr/bin/env python3
"""The database's share of the outbox's cost: the save's statement alone, without Django.

    DATABASE_URL=postgres://… python benchmarks/save_statement.py [--saves 300] [--rounds 12]

A new database on $DATABASE_URL's PostgreSQL server, the example's tables migrated; psycopg with
client-side binding (as Django uses it), autocommit, one connection. Three statements, in
alternating blocks of `--saves`, `--rounds` times each:
- `insert`: a chat message's `INSERT … RETURNING` (what a save without the outbox sends);
- `with_outbox_row`: the same and its outbox row in one statement, the shape of the library's
  one-statement save (`publishing/outbox/statements.py`);
- `with_wal_message`: the same `INSERT` and the event written to the WAL only
  (`pg_logical_emit_message`), what an outbox that is not a table would cost.
Printed as JSON: median µs a statement, and each against `insert` (the median of each round's
ratio of rates). What `save_rate.py` measures beyond these is the save's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAND_IN = "999999999"
"""The digits the statement replaces with the new row's pk (the library's stand-in pk)."""
CHANNELS = ["chat.correspondence:1", f"chat.message:{STAND_IN}"]
PAYLOAD = (
    f'{{"kind":"created","model":"chat.message","pk":"{STAND_IN}","data":{{"id":{STAND_IN},'
    '"correspondence":1,"author":1,"body":"a message of an ordinary length, say",'
    '"created_at":"2026-12-07T22:00:00.000000+00:00"}}'
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saves", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise SystemExit(
            "Set DATABASE_URL=postgres://… (a PostgreSQL server to make a database on)."
        )
    from tests.services import database_service

    os.environ["DJANGO_SETTINGS_MODULE"] = "example.settings"
    with database_service() as database_url:
        os.environ["DATABASE_URL"] = database_url
        print(json.dumps(measure(database_url, args.saves, args.rounds)))


def measure(url: str, saves: int, rounds: int) -> dict[str, object]:
    import django

    django.setup()
    import psycopg
    from django.core.management import call_command
    from django.db import connection, connections
    from django.utils import timezone

    from benchmarks.save_rate import round_ratio
    from example.chat.models import Message
    from gql_pubsub.publishing.models import OutboxEvent
    from gql_pubsub.publishing.outbox.statements import PendingRow, row_params, single_insert

    call_command("migrate", verbosity=0)
    connections.close_all()
    message = Message._meta.db_table
    insert = (
        f"INSERT INTO {message} (correspondence_id, author_id, body, created_at) "
        "VALUES (%s, %s, %s, %s) RETURNING id"
    )
    quote = connection.ops.quote_name
    statements = {
        "insert": insert,
        "with_outbox_row": single_insert(OutboxEvent, "id", quote, insert),  # the library's
        "with_wal_message": (
            f"WITH m AS ({insert}) SELECT m.id, pg_logical_emit_message(true, 'gql_pubsub', "
            f"replace(%s, '{STAND_IN}', m.id::text)) FROM m"
        ),
    }
    with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
        conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, "
            "last_name, email, is_staff, is_active, date_joined) VALUES "
            "('', false, 'bench', '', '', '', false, true, now())"
        )
        user = conn.execute("SELECT id FROM auth_user").fetchone()[0]
        conn.execute("INSERT INTO chat_correspondence (title, created_at) VALUES ('b', now())")
        room = conn.execute("SELECT id FROM chat_correspondence").fetchone()[0]

        def params(name: str) -> tuple[object, ...]:
            row = (room, user, "a message of an ordinary length, say", "2026-12-07T22:00:00Z")
            if name == "with_outbox_row":
                outbox_row = PendingRow("gql_pubsub", CHANNELS, PAYLOAD, "p", timezone.now())
                return (*row, *row_params(outbox_row, STAND_IN))
            return (*row, PAYLOAD) if name == "with_wal_message" else row

        def block(name: str, n: int) -> float:
            sql, values = statements[name], params(name)
            started = time.perf_counter()
            for _ in range(n):
                conn.execute(sql, values).fetchone()
            return n / (time.perf_counter() - started)

        for name in statements:  # warm up
            block(name, 50)
        rates: dict[str, list[float]] = {name: [] for name in statements}
        for _ in range(rounds):
            for name in statements:
                rates[name].append(block(name, saves))
    base = rates["insert"]
    return {
        "saves": saves,
        "rounds": rounds,
        "us_per_statement": {n: round(1e6 / statistics.median(r), 1) for n, r in rates.items()},
        "against_insert": {name: round_ratio(r, base) for name, r in rates.items()},
    }


if __name__ == "__main__":
    main()

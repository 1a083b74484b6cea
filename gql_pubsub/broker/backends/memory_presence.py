"""Presence kept in this process: the in-memory backend's table of who is on each channel."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson


class PresenceTable:
    """One channel's connections (expiring) and members, changed as Redis's script does."""

    __slots__ = ("connections", "count", "info", "since")

    def __init__(self) -> None:
        self.connections: dict[str, tuple[str, float]] = {}  # connection -> (member, expiry)
        self.count: dict[str, int] = {}
        self.info: dict[str, str] = {}
        self.since: dict[str, int] = {}

    def change(
        self, joins: Sequence[tuple[str, str, str]], leaves: Sequence[str], ttl: float
    ) -> bytes | None:
        """Apply expiry, joins and leaves; the event of who came and went, net (None: nobody)."""
        now = time.time()
        was: dict[str, bool] = {}

        def touch(member: str) -> None:
            was.setdefault(member, member in self.count)

        def drop(connection: str) -> None:
            found = self.connections.pop(connection, None)
            if found is None:
                return
            member = found[0]
            touch(member)
            self.count[member] -= 1
            if self.count[member] <= 0:
                del self.count[member], self.info[member], self.since[member]

        for connection, (_, expiry) in list(self.connections.items()):
            if expiry <= now:
                drop(connection)
        for connection, member, info in joins:
            if connection in self.connections:
                self.connections[connection] = (member, now + ttl)
                continue
            touch(member)
            self.connections[connection] = (member, now + ttl)
            self.count[member] = self.count.get(member, 0) + 1
            if self.count[member] == 1:
                self.info[member] = info
                self.since[member] = int(now * 1000)
        for connection in leaves:
            drop(connection)
        came = [m for m, present in was.items() if not present and m in self.count]
        went = [m for m, present in was.items() if present and m not in self.count]
        if not came and not went:
            return None
        joined = [
            {"id": m, "info": orjson.Fragment(self.info[m]), "since": self.since[m]} for m in came
        ]
        data = {"joins": joined, "leaves": went}
        return orjson.dumps({"kind": "custom", "model": None, "pk": None, "data": data})

    def rows(self) -> list[tuple[str, str, int, int]]:
        """The members: (member, info JSON, since in Unix ms, connections)."""
        return [(m, self.info[m], self.since[m], n) for m, n in self.count.items()]

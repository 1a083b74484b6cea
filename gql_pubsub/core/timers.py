"""The sockets' deadlines on a few event-loop timers: one per slot of ``RESOLUTION`` seconds that
holds a deadline, not one per socket and timer (an idle socket's keep-alive ping costs a dict
entry, not a loop timer with its handle and context)."""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Protocol

logger = logging.getLogger("gql_pubsub.websocket")

RESOLUTION = 0.05
"""Seconds: a deadline fires at most this late."""


class Owner(Protocol):
    """What holds deadlines: told when one of its slots is due."""

    def due(self, slot: int) -> None: ...


class Wheel:
    """The deadlines of one event loop, by slot."""

    __slots__ = ("_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, dict[Owner, None]] = {}

    def add(self, delay: float, owner: Owner) -> int:
        """Tell ``owner`` in ``delay`` seconds (at most ``RESOLUTION`` later); returns the slot."""
        slot = math.ceil((self._loop.time() + delay) / RESOLUTION)
        owners = self._slots.get(slot)
        if owners is None:
            owners = self._slots[slot] = {}
            self._loop.call_at(slot * RESOLUTION, self._fire, slot)
        owners[owner] = None
        return slot

    def discard(self, slot: int, owner: Owner) -> None:
        """Do not tell ``owner`` at ``slot`` (it has no deadline left there)."""
        owners = self._slots.get(slot)
        if owners is not None:
            owners.pop(owner, None)

    def _fire(self, slot: int) -> None:
        for owner in self._slots.pop(slot, {}):
            try:
                owner.due(slot)
            except Exception:  # one owner's failure must not skip the others
                logger.exception("A socket's timer failed")


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Wheel] = weakref.WeakKeyDictionary()


def wheel() -> Wheel:
    """The running loop's wheel."""
    loop = asyncio.get_running_loop()
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = Wheel(loop)
    return found

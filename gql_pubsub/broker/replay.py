"""Resuming from a cursor: what the histories owe a subscriber (the replay plan), and where a
followed stream is (its places)."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gql_pubsub.broker.cursors import Cursor
from gql_pubsub.core.events import START, Epochs, Event, EventDecodeError, Offset

if TYPE_CHECKING:
    from gql_pubsub.broker.broker import Broker


async def history_since(
    broker: Broker, channel: str, epoch: str, after: Offset, issued: float
) -> list[Event] | None:
    """The events of ``channel`` after ``after`` from its history, or None if the history
    cannot prove it has them all (the caller must tell its client to refetch)."""
    await broker.start()
    entries = await broker.backend.history(channel, epoch, after, issued)
    if entries is None:
        return None
    events = []
    for offset, payload in entries:
        with contextlib.suppress(EventDecodeError):
            events.append(Event.decode(payload, channel, epoch, offset))
    return events


async def replay_plan(
    broker: Broker, after: Cursor, epochs: Epochs, here: dict[str, Offset], *, unnamed_lost: bool
) -> tuple[dict[str, Offset], list[Event], list[str]]:
    """What a subscriber resuming from ``after`` is owed, where the live stream is ``here``
    (in ``epoch``): its place per channel, the events to replay first (in offset order), and
    the channels whose history cannot prove it holds them. A channel the cursor does not
    name is lost if ``unnamed_lost``, else owed nothing (followed since)."""
    places = dict(here)
    replayed: list[Event] = []
    lost: list[str] = []
    for channel in sorted(here):
        start = after.positions.get(channel)
        if start is None and not unnamed_lost:
            continue
        epoch = epochs.get(channel, "")
        if start is None or after.epochs.get(channel) != epoch:
            lost.append(channel)
            continue
        places[channel] = start
        if start >= here[channel]:
            continue  # ahead of this server: skip what it has
        events = await history_since(broker, channel, epoch, start, after.issued)
        if events is None:
            places[channel] = here[channel]
            lost.append(channel)
            continue
        replayed.extend(e for e in events if e.offset <= here[channel])
    return places, sorted(replayed, key=lambda e: e.offset), lost


class Places:
    """Where a followed-channel stream is in its channels' histories (its cursor), and what it
    replays first when it resumes from a client's cursor."""

    def __init__(self, after: Cursor | None) -> None:
        self.after = after
        self.epochs: Epochs = {}
        self.positions: dict[str, Offset] = {}
        self.floor: dict[str, Offset] = {}
        """Where each channel's history ended when the stream started: live events up to there
        are replayed, or came before the start."""
        self.replay: deque[Event] = deque()
        self.lost: list[str] = []

    def cursor(self, channels: Iterable[str]) -> str:
        """The cursor of the stream following ``channels`` now."""
        positions = {c: self.positions.get(c, START) for c in channels}
        if self.replay and self.after is not None:  # places as old as the client's cursor
            return Cursor(self.epochs, positions, self.after.issued).encode()
        return Cursor(self.epochs, positions).encode()

    async def start(self, broker: Broker, control: str, channels: list[str]) -> None:
        """Where each channel's history ends now; what the client's cursor missed, to replay."""
        self.epochs, here = await broker.tail([control, *channels])
        self.positions.update(here)
        self.floor = here
        if self.after is not None:
            places, replayed, self.lost = await replay_plan(
                broker, self.after, self.epochs, {c: here[c] for c in channels}, unnamed_lost=False
            )
            self.positions.update(places)
            self.replay.extend(replayed)

    def passes(self, event: Event, replayed: bool) -> bool:
        """Note the event's place; False for one replayed already or from before the start."""
        if not event.epoch:
            return True  # from a publisher without a history: no place to note
        channel = event.channel
        if event.epoch != self.epochs.get(channel):  # its history was lost (the gap was signalled)
            self.epochs[channel] = event.epoch
            self.positions.pop(channel, None)
            self.floor.pop(channel, None)
        elif not replayed and event.offset <= max(
            self.positions.get(channel, START), self.floor.get(channel, START)
        ):
            return False
        self.positions[channel] = event.offset
        return True

    async def follow(self, broker: Broker, channel: str) -> None:
        """A channel followed from now on: its events after this place are owed."""
        epochs, here = await broker.tail([channel])
        if self.epochs.setdefault(channel, epochs[channel]) == epochs[channel]:
            self.positions.setdefault(channel, here[channel])

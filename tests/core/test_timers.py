"""The sockets' timers: deadlines on a few loop timers (one per slot), never early, at most one
slot late; and a listener's channels, kept small while they are few."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gql_pubsub.broker.listeners import Watcher
from gql_pubsub.core.timers import RESOLUTION, Wheel, wheel

from ..services import scaled


class Clock:
    """An owner of deadlines that notes when it was told."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fail: bool = False) -> None:
        self.loop = loop
        self.told: list[float] = []
        self.fail = fail

    def due(self, slot: int) -> None:
        self.told.append(self.loop.time())
        if self.fail:
            raise RuntimeError("this owner's timer fails")


async def test_a_deadline_fires_never_early_and_at_most_one_slot_late() -> None:
    loop = asyncio.get_running_loop()
    clocks = [Clock(loop) for _ in range(20)]
    start = loop.time()
    for n, clock in enumerate(clocks):
        wheel().add(0.01 * n, clock)
    await asyncio.sleep(0.2 + RESOLUTION)
    for n, clock in enumerate(clocks):
        assert len(clock.told) == 1
        assert start + 0.01 * n <= clock.told[0] <= start + 0.01 * n + RESOLUTION + scaled(0.05)


async def test_a_thousand_deadlines_in_one_slot_use_one_loop_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    scheduled: list[Any] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kw: Any) -> asyncio.TimerHandle:
        if getattr(callback, "__self__", None) is own:
            scheduled.append(callback)
        return call_at(when, callback, *args, **kw)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    own = Wheel(loop)
    clocks = [Clock(loop) for _ in range(1000)]
    slot = own.add(0.02, clocks[0])
    for clock in clocks[1:]:
        assert own.add(0.02, clock) in (slot, slot + 1)  # the loop's clock moved on, at most
    assert len(scheduled) <= 2
    await asyncio.sleep(0.02 + 2 * RESOLUTION + scaled(0.05))
    assert all(len(clock.told) == 1 for clock in clocks)


async def test_a_discarded_deadline_does_not_fire_and_a_failing_owner_spares_the_others() -> None:
    loop = asyncio.get_running_loop()
    kept, dropped, failing = Clock(loop), Clock(loop), Clock(loop, fail=True)
    slot = wheel().add(0.01, failing)
    assert wheel().add(0.01, dropped) == slot
    wheel().discard(slot, dropped)
    wheel().add(0.01, kept)
    await asyncio.sleep(0.01 + RESOLUTION + scaled(0.05))
    assert (len(failing.told), len(dropped.told), len(kept.told)) == (1, 0, 1)


def test_a_listeners_channels_are_a_tuple_while_few_and_a_set_beyond() -> None:
    watcher = Watcher(lambda event: None)
    watcher.joined("control:1")
    watcher.joined("control:1")  # once
    assert watcher.channels == ("control:1",)
    for n in range(8):
        watcher.joined(f"room:{n}")
    assert isinstance(watcher.channels, set) and len(watcher.channels) == 9
    watcher.left("room:0")
    assert "room:0" not in watcher.channels and len(watcher.channels) == 8
    small = Watcher(lambda event: None)
    for name in ("a", "b", "c"):
        small.joined(name)
    small.left("b")
    small.left("z")  # not there: nothing changes
    assert small.channels == ("a", "c")

"""The send buffer's policy, without a socket: frames in order, in the caller's turn while the
transport is writable, queued (bounded) behind one writer when it is not, overflow once."""

from __future__ import annotations

import asyncio
from typing import Any

from gql_pubsub.transports.websocket.send_buffer import SendBuffer


class Transport:
    """An ASGI send with uvicorn's flow-control flag; ``writable`` is cleared by the test."""

    def __init__(self, *, flagged: bool = True) -> None:
        self.sent: list[str] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.flagged = flagged
        self.fail = False

    async def send(self, message: dict[str, Any]) -> None:
        await self.writable.wait()
        if self.fail:
            raise OSError("connection reset")
        self.sent.append(message["text"])


def send_buffer(transport: Transport, limit: int = 3) -> tuple[SendBuffer, list[int]]:
    overflows: list[int] = []
    send = transport.send if transport.flagged else (lambda message: transport.send(message))
    return SendBuffer(send, limit=limit, on_overflow=lambda: overflows.append(1)), overflows


async def test_a_writable_transport_gets_each_frame_in_the_callers_turn() -> None:
    transport = Transport()
    box, _ = send_buffer(transport)
    assert box.flow_controlled
    tasks = len(asyncio.all_tasks())
    for n in range(5):
        await box.send(f"f{n}")
        assert transport.sent[-1] == f"f{n}"  # written before send() returned
    assert len(asyncio.all_tasks()) == tasks  # no writer task was needed


async def test_a_blocked_transport_queues_frames_in_order_behind_one_writer() -> None:
    transport = Transport()
    box, overflows = send_buffer(transport, limit=4)
    transport.writable.clear()
    for n in range(3):
        await box.send(f"f{n}")
    assert transport.sent == []
    transport.writable.set()
    await box.send("f3")  # queued behind the others, not written ahead of them
    for _ in range(10):
        await asyncio.sleep(0)
    assert transport.sent == ["f0", "f1", "f2", "f3"]
    assert overflows == []


async def test_more_than_limit_waiting_frames_overflow_once_and_drop_the_rest() -> None:
    transport = Transport()
    box, overflows = send_buffer(transport, limit=3)
    transport.writable.clear()
    for n in range(3):
        await box.send(f"f{n}")  # (the writer task has not run: all three wait)
    assert overflows == []
    await box.send("f3")  # a fourth waiting frame is one too many
    assert overflows == [1]
    for n in range(4, 10):
        await box.send(f"f{n}")
    assert overflows == [1]
    transport.writable.set()
    await box.close()
    assert transport.sent == []  # the writer had taken f0 and was cancelled at close


async def test_a_send_without_the_flag_always_goes_through_the_writer() -> None:
    transport = Transport(flagged=False)
    box, _ = send_buffer(transport)
    assert not box.flow_controlled
    await box.send("a")
    assert transport.sent == []  # queued for the writer task
    await asyncio.sleep(0)
    assert transport.sent == ["a"]


async def test_a_failing_transport_closes_the_send_buffer_quietly() -> None:
    transport = Transport()
    box, overflows = send_buffer(transport)
    transport.fail = True
    await box.send("lost")
    transport.fail = False
    await box.send("after")
    assert transport.sent == []
    assert overflows == []

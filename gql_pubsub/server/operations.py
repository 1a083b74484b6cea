"""A socket's operations: where each one starts (hooks, engine, fan-out) and where it ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from gql_pubsub.broker.backends.base import BrokerUnavailable
from gql_pubsub.conf import get_settings
from gql_pubsub.core.control import Announcement, Change
from gql_pubsub.core.events import Event, Gap
from gql_pubsub.execution.group import Group
from gql_pubsub.execution.member import Member
from gql_pubsub.execution.request import OperationRequest
from gql_pubsub.execution.results import payload_of, refused
from gql_pubsub.presence.ephemeral import derived_channels
from gql_pubsub.server.close_codes import CloseCode
from gql_pubsub.server.grouping import subscribe
from gql_pubsub.server.hooks import OperationRefused, completes
from gql_pubsub.server.session import BROKER_UNREACHABLE

if TYPE_CHECKING:
    from gql_pubsub.server.peer import Peer

    pass

logger = logging.getLogger("gql_pubsub.websocket")


class Operation:
    """What runs one operation: its own task, or (once it joined one) a fan-out group."""

    __slots__ = ("channels", "group", "revoked", "streaming", "task", "token")

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task: asyncio.Task[None] | None = task
        self.group: Group | None = None
        self.token = 0
        self.channels: frozenset[str] = frozenset()
        """The channels a stream of its own task names (a presence stream): revocable too."""
        self.revoked: set[str] | None = None
        """Channels revoked while it started, before it said what it reads."""
        self.streaming = False
        """Whether it streams on its own task (Strawberry's pipeline), its resolver called."""

    def starting(self) -> bool:
        """Whether it has not yet said what it reads (its resolver runs, or it joins a group)."""
        return self.group is None and not self.channels

    def settled(self) -> bool:
        """Whether it has joined its group or streams on its own (not still on its way there,
        nor a query running)."""
        return self.group is not None or self.streaming

    def stop(self) -> None:
        """Leave the group, or cancel the task."""
        if self.group is not None:
            self.group.leave(self.token)
        elif self.task is not None:
            self.task.cancel()

    def reads(self, channel: str) -> bool:
        """Whether the operation streams ``channel`` (its group's, or its own stream's), or
        the channel's presence or ephemeral events."""
        names = self.group.stream.channels if self.group is not None else self.channels
        return channel in names or any(name in names for name in derived_channels(channel))


class Operations:
    """The operations of one connection, by id."""

    __slots__ = ("_background", "connection", "running", "started")

    def __init__(self, connection: Peer) -> None:
        self.connection = connection
        self._background: set[asyncio.Task[None]] | None = None  # most sockets never need it
        self.running: dict[str, Operation] = {}
        self.started: dict[str, OperationRequest] = {}
        """Operations ``on_subscribe`` let start, until ``on_complete`` is called for them (kept
        only when the hooks have an ``on_complete``)."""

    def __len__(self) -> int:
        return len(self.running)

    def start(self, op: OperationRequest) -> None:
        """Start ``op`` in its own task (it ends, or hands over to a group)."""
        self.running[op.id] = Operation(asyncio.create_task(self._run(op)))

    def refusal(self) -> str | None:
        """Why a new operation may not start (the connection's limits), if it may not."""
        settings = get_settings()
        if len(self.running) >= settings.MAX_OPERATIONS_PER_CONNECTION:
            return (
                f"Too many operations on this connection: the limit is "
                f"{settings.MAX_OPERATIONS_PER_CONNECTION}. Complete some first."
            )
        if not self.connection.rate.allow():
            return (
                f"Too many operations too fast: at most {settings.OPERATION_RATE:g} per second "
                f"(bursts of {settings.OPERATION_BURST}). Retry a little later."
            )
        return None

    def _mine(self, op_id: str) -> bool:
        """Whether ``op_id`` is still this task's to run (not completed, the socket open)."""
        entry = self.running.get(op_id)
        return entry is not None and entry.task is asyncio.current_task()

    async def _run(self, op: OperationRequest) -> None:
        """A group membership for subscriptions, else Strawberry's pipeline."""
        connection = self.connection
        try:
            assert connection.context is not None  # operations start after the ack
            try:
                await connection.server.hooks.on_subscribe(connection.context, op)
            except OperationRefused as refused_:
                await self.fail(op.id, [{"message": str(refused_)}])
                return
            if completes(connection.server.hooks):
                self.started[op.id] = op  # for on_complete (kept only for it: ~0.6 KB)
            engine = connection.server.engine
            document = engine.prepare(op.query)
            if isinstance(document, list):
                await self.fail(op.id, engine.report(document))
                return
            if engine.groupable(document, op.operation_name):
                await subscribe(self, op, document)
            else:
                await self.stream(op.id, await engine.stream(op, connection.context))
        except asyncio.CancelledError:
            raise
        except BrokerUnavailable as error:  # an OSError too: not the client's going away
            logger.warning("Operation %r of %s failed: %s", op.id, connection.client, error)
            await self.fail(op.id, [{"message": BROKER_UNREACHABLE}])
        except OSError:
            pass  # the client went away mid-send; the receive loop ends the connection
        except Exception:
            logger.exception("Operation %r failed", op.id)
            await connection.close(CloseCode.INTERNAL_SERVER_ERROR, "Internal server error")
        finally:
            if self._mine(op.id):
                del self.running[op.id]

    async def join(self, op_id: str, group: Group, member: Member) -> bool:
        """Join ``group``; False if the operation was completed or the socket closed meanwhile."""
        token = await group.join(member)
        entry = self.running.get(op_id)
        if entry is None or entry.task is not asyncio.current_task() or self.connection.closed:
            group.leave(token)
            return False
        entry.group, entry.token, entry.task = group, token, None
        return True

    def framing(self, op_id: str) -> tuple[str, str]:
        """What the connection's protocol puts before and after a result's payload."""
        protocol = self.connection.protocol
        return protocol.next_prefix(op_id), protocol.next_suffix

    async def stream(self, op_id: str, results: Any) -> None:
        """Send each result of an operation no group serves (Strawberry's pipeline)."""
        connection = self.connection
        entry = self.running.get(op_id)
        if entry is not None:
            entry.streaming = True
        first = True
        async with contextlib.aclosing(results):
            async for result in results:
                errors = refused(result) if first else None
                if errors is not None:
                    await self.fail(op_id, errors)
                    return
                first = False
                payload = payload_of(result)
                if payload is None:
                    continue  # incremental delivery frames have no graphql-transport-ws form
                if op_id not in connection.protocol.operations:
                    return
                prefix, suffix = self.framing(op_id)
                await connection.send_buffer.send(prefix + payload + suffix)
        await self.finish(op_id, None)

    async def finish(self, op_id: str, error: str | None) -> None:
        """The server ended operation ``op_id`` (its stream ended or failed)."""
        entry = self.running.get(op_id)
        if entry is not None and entry.group is not None:
            del self.running[op_id]
        for frame in self.connection.protocol.complete(op_id, error):
            await self.connection.send_text(frame)
        await self.ended(op_id)

    async def fail(self, op_id: str, errors: list[Any]) -> None:
        """Answer ``op_id`` with an ``error`` message."""
        connection = self.connection
        frame = connection.protocol.error(op_id, errors)
        if frame is not None:
            logger.info(
                "Operation %r of %s failed: %s",
                op_id,
                connection.client,
                "; ".join(str(error.get("message")) for error in errors)[:1000],
            )
            await connection.send_text(frame)
        await self.ended(op_id)

    async def ended(self, op_id: str) -> None:
        """Tell ``on_complete`` that a started operation ended (once)."""
        op = self.started.pop(op_id, None)
        context = self.connection.context
        if op is None or context is None:
            return
        try:
            await self.connection.server.hooks.on_complete(context, op)
        except Exception:
            logger.exception("The on_complete hook failed for operation %r", op_id)

    def stop(self, op_id: str) -> None:
        """Stop ``op_id`` (the client completed it, or it may no longer run)."""
        entry = self.running.pop(op_id, None)
        if entry is not None:
            entry.stop()

    def revoke(self, channel: str) -> list[str]:
        """Stop the operations whose group streams ``channel``; their ids. One still starting
        (its access checked, its channels not yet known) keeps the channel to check once they
        are: else a revocation during its start would be missed."""
        stopped = [op_id for op_id, entry in self.running.items() if entry.reads(channel)]
        for op_id in stopped:
            self.stop(op_id)
        for entry in self.running.values():
            if entry.starting():
                entry.revoked = {*(entry.revoked or ()), channel}
        return stopped

    async def end_revoked(self, op_id: str, channel: str) -> None:
        """End ``op_id``, stopped because access to ``channel`` was revoked, saying so."""
        await self.finish(op_id, f"Access to {channel!r} was revoked.")

    def revoked_meanwhile(self, op_id: str) -> str | None:
        """A channel ``op_id`` reads that was revoked while it started, if any."""
        entry = self.running.get(op_id)
        if entry is None or entry.revoked is None:
            return None
        revoked, entry.revoked = entry.revoked, None
        return next((channel for channel in revoked if entry.reads(channel)), None)

    def on_access_change(self, event: Event | Gap) -> None:
        """The user's control channel, inside the broker's dispatch: a revocation ends the
        operations on its channel (groups lose the member) before any later event; a
        deactivation, or a gap (a revocation may be among what was lost), closes the connection."""
        if isinstance(event, Gap):
            reason = "Going away: reconnect to check access again"
            self.in_background(self.connection.close(CloseCode.GOING_AWAY, reason))
            return
        announcement = Announcement.of(event)
        if announcement is None:
            return
        if announcement.change is Change.DEACTIVATED:
            reason = "Forbidden: user deactivated"
            self.in_background(self.connection.close(CloseCode.FORBIDDEN, reason))
            return
        channel = announcement.channel
        if announcement.change is not Change.REVOKED or channel is None:
            return
        for op_id in self.revoke(channel):
            self.in_background(self.end_revoked(op_id, channel))

    def in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in a task of the connection's (kept until it ends)."""
        if self._background is None:
            self._background = set()
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def stop_all(self) -> None:
        """Stop every operation but the caller's own (it is closing the socket)."""
        for op_id, entry in list(self.running.items()):
            if entry.task is not asyncio.current_task():
                self.stop(op_id)

    async def close(self) -> None:
        """The socket closed: stop every operation, wait for their tasks, end them all."""
        entries = list(self.running.values())
        self.running.clear()
        for entry in entries:
            if entry.task is not asyncio.current_task():
                entry.stop()
        for entry in entries:
            if entry.task is not None and entry.task is not asyncio.current_task():
                with contextlib.suppress(BaseException):
                    await entry.task
        for op_id in list(self.started):
            await self.ended(op_id)

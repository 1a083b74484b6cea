"""How a subscription joins a fan-out group: the group's key (operation, stream, viewer), its
executor (the subscriber's, or nobody's when the result cannot depend on who receives it: a
``shared`` stream, or a selection set ``viewers`` finds viewer-independent, or one whose
per-viewer fields each member fills in), catching up from a cursor, and a user's
followed-channel stream attached to its group."""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode
from graphql.execution import Executor

from gql_pubsub.broker.cursors import Cursor, InvalidCursor, start_payload, with_cursor
from gql_pubsub.execution.catch_up import catch_up
from gql_pubsub.execution.group import Group
from gql_pubsub.execution.member import Followed, Member, Source
from gql_pubsub.execution.request import OperationRequest
from gql_pubsub.execution.viewers import PerViewer
from gql_pubsub.streams.channels import ChannelStream

if TYPE_CHECKING:
    from gql_pubsub.server.operations import Operations
    from gql_pubsub.streams.user_streams import UserSubscriptionsStream


async def subscribe(ops: Operations, op: OperationRequest, document: DocumentNode) -> None:
    """Serve a subscription from a fan-out group (channel streams, users' followed
    channels); any other stream runs per subscriber."""
    connection = ops.connection
    resumable = op.extensions is not None and "after" in op.extensions
    after: Cursor | None = None
    if resumable and op.extensions is not None and op.extensions["after"] is not None:
        try:
            after = Cursor.decode(op.extensions["after"])
        except InvalidCursor as error:
            await ops.fail(op.id, [{"message": str(error)}])
            return
    engine = connection.server.engine
    executor = engine.build(document, connection.context, op)
    if isinstance(executor, list):
        await ops.fail(op.id, executor)
        return
    source = await engine.source(executor)
    if isinstance(source, list):
        await ops.fail(op.id, source)
        return
    from gql_pubsub.streams.user_streams import (
        UserSubscriptionsStream,  # needs Django's apps: imported late
    )

    if isinstance(source, UserSubscriptionsStream):
        await follow(ops, op, document, executor, source, resumable, after)
        return
    if not isinstance(source, ChannelStream):
        entry = ops.running.get(op.id)
        channels = getattr(source, "channels", None)  # a presence stream names its channel
        if entry is not None and isinstance(channels, frozenset):
            entry.channels = channels
        if (revoked := ops.revoked_meanwhile(op.id)) is not None:
            await ops.end_revoked(op.id, revoked)
            return
        await ops.stream(op.id, engine.results(executor, source))
        return
    per_viewer = {} if source.shared else engine.viewing(op, document)
    key: Hashable = (*op.key(), source.key, _viewer_key(ops, per_viewer), resumable)
    group = _group(ops, key, op, document, executor, source, per_viewer, resumable)
    member = Member(*ops.framing(op.id), connection.send_buffer, ops, op.id)
    if per_viewer:
        member.context, member.viewer = connection.context, _user_key(ops)  # it fills its own
    if resumable:
        member.held = []  # the group's frames wait until the member has caught up
    if not await ops.join(op.id, group, member):
        return
    if (revoked := ops.revoked_meanwhile(op.id)) is not None:
        ops.stop(op.id)  # leaves the group: nothing more reaches it
        await ops.end_revoked(op.id, revoked)
        return
    if resumable:
        await catch_up(group, member, after)


async def follow(
    ops: Operations,
    op: OperationRequest,
    document: DocumentNode,
    executor: Executor[Any],
    source: UserSubscriptionsStream[Any],
    resumable: bool,
    after: Cursor | None,
) -> None:
    """A user's followed-channel stream, as a member of the group that renders its events
    (all users' for a ``shared`` stream, else its user's): the stream lets events through."""
    engine = ops.connection.server.engine
    per_viewer = {} if source.shared else engine.viewing(op, document)
    key: Hashable = (*op.key(), source.feed_key, _viewer_key(ops, per_viewer))
    feed = Followed(source.broker, source.map)
    group = _group(ops, key, op, document, executor, feed, per_viewer, False)
    member = Member(*ops.framing(op.id), ops.connection.send_buffer, ops, op.id)
    if per_viewer:
        member.context, member.viewer = ops.connection.context, _user_key(ops)
    member.detach = source.aclose
    if not await ops.join(op.id, group, member):
        return  # leaving detached the stream
    if resumable:
        source.resume_from(after)
    await source.attach(lambda event, cursor: group.inbox.offer(event, member, cursor))
    if resumable:
        prefix, suffix = ops.framing(op.id)
        await member.send_buffer.send(prefix + start_payload(source.cursor, source.lost) + suffix)
        for event, cursor in source.replayed():
            body = await group.render(event)
            if body is not None:
                text = await group.personal(body, member)
                await member.send_buffer.send(prefix + with_cursor(text, cursor) + suffix)
    source.go_live()


def _group(
    ops: Operations,
    key: Hashable,
    op: OperationRequest,
    document: DocumentNode,
    executor: Executor[Any],
    source: Source,
    per_viewer: PerViewer | None,
    resumable: bool,
) -> Group:
    """The group for ``key``: one that serves every viewer executes with nobody's context
    (leaving its ``per_viewer`` fields for each member to fill)."""
    engine = ops.connection.server.engine
    make_executor = (
        functools.partial(engine.anonymous_executor, document, op, per_viewer)
        if per_viewer is not None
        else lambda: executor
    )
    return ops.connection.server.fanout.group(key, make_executor, source, resumable=resumable)


def _viewer_key(ops: Operations, per_viewer: PerViewer | None) -> Hashable:
    """Whose view a group executes: every viewer's (nothing depends on the viewer, or each
    member fills in what does), the user's, or (anonymous) this connection's."""
    if per_viewer is not None:
        return "per-viewer fields" if per_viewer else None
    return _user_key(ops)


def _user_key(ops: Operations) -> Hashable:
    """The user's, or (anonymous) this connection's: its operations themselves, not their id,
    which a later connection could be given while a key or a filled payload is still kept."""
    context = ops.connection.context
    user = context.user if context is not None else None
    if user is not None and user.is_authenticated:
        return ("user", user.pk)
    return ("connection", ops)

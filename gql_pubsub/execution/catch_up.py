"""Catching up: how a member that joins a resumable group is brought to the group's place
before its live frames."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from gql_pubsub.broker.cursors import Cursor, start_payload, with_cursor
from gql_pubsub.broker.replay import replay_plan
from gql_pubsub.core.events import START, Event

if TYPE_CHECKING:
    from gql_pubsub.execution.group import Group
    from gql_pubsub.execution.member import Member


async def catch_up(group: Group, member: Member, after: Cursor | None) -> None:
    """Bring a member that just joined a resumable group to the group's place: tell it it is
    live (or to refetch what the history lost), replay what it missed after ``after``, then
    the group's frames held meanwhile."""
    member.held = member.held if member.held is not None else []
    epochs, here = dict(group.epochs), dict(group.positions)
    mine = dict(here)  # where the member is: its cursor's places where it is replayed
    replayed: list[Event] = []
    lost: list[str] = []
    if after is not None:
        mine, replayed, lost = await replay_plan(
            group.stream.broker, after, epochs, here, unnamed_lost=True
        )
    if group.members.get(id(member)) is not member:
        return  # completed, revoked or closed meanwhile
    # Places from the client's cursor are as old as that cursor until the replay passes them.
    issued = after.issued if after is not None and replayed else time.time()
    await member.send_buffer.send(
        member.prefix + start_payload(Cursor(epochs, mine, issued).encode(), lost) + member.suffix
    )
    for n, event in enumerate(replayed, 1):
        if group.members.get(id(member)) is not member:
            return
        mine[event.channel] = event.offset
        body = await group.render(event)
        if body is not None:
            text = await group.personal(body, member)
            current = n == len(replayed)
            cursor = Cursor(epochs, mine, time.time() if current else issued).encode()
            await member.send_buffer.send(member.prefix + with_cursor(text, cursor) + member.suffix)
    if group.members.get(id(member)) is not member:
        return
    held, member.held = member.held or [], None
    member.positions = mine if mine != here else None
    for channel, offset, body in held:
        if offset > mine.get(channel, START):
            if member.positions is None:
                member.positions = mine  # frames held: send this member's own cursor
            await group.forward(member, channel, offset, body)

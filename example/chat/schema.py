"""The chat's GraphQL API: its operations are a contract (see schema/schema.graphql)."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import User as UserModel
from django.db import transaction
from strawberry.scalars import JSON
from strawberry.types import Info

from gql_pubsub import (
    SKIP,
    AccessDenied,
    Channel,
    Event,
    EventKind,
    Skip,
    check_access,
    create_jwt,
    get_user,
    instances,
    listen_to_user_subscriptions,
    stream,
)
from gql_pubsub import Subscription as ChannelSubscriptionModel
from gql_pubsub.presence import (
    EphemeralRefused,
    broadcast,
    ephemeral_channel,
    members,
    presence_stream,
)

from . import models
from .presence import (
    OnlineMember,
    PresenceChange,
    Typing,
    online_member,
    presence_change,
    public_info,
    typing_of,
)

User = get_user_model()


class ChatError(Exception):
    """An error the client caused, with a message that says what to do."""


# -- types --------------------------------------------------------------------------------


# --8<-- [start:types]
@strawberry_django.type(User, name="User")
class UserType:
    id: strawberry.auto
    username: strawberry.auto


@strawberry_django.type(models.Correspondence, name="Correspondence")
class CorrespondenceType:
    id: strawberry.auto
    title: strawberry.auto
    created_at: strawberry.auto
    participants: list[UserType]


@strawberry_django.type(models.Message, name="Message")
class MessageType:
    id: strawberry.auto
    body: strawberry.auto
    created_at: strawberry.auto
    author: UserType
    correspondence: CorrespondenceType
    # --8<-- [end:types]


# --8<-- [start:event_types]
@strawberry.enum(name="MessageEventKind")
class MessageEventKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@strawberry.type
class MessageEvent:
    kind: MessageEventKind
    message: MessageType


@strawberry.enum(name="ChannelEventKind")
class ChannelEventKind(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    CUSTOM = "custom"


PublishedNode = Annotated[MessageType | CorrespondenceType, strawberry.union("PublishedNode")]


@strawberry.type
class ChannelEvent:
    channel: str
    kind: ChannelEventKind
    node: PublishedNode | None
    data: JSON | None
    # --8<-- [end:event_types]


@strawberry.type
class ChannelSubscription:
    channel: str
    active: bool


@strawberry.type
class LoginPayload:
    token: str
    user: UserType


# -- access -------------------------------------------------------------------------------


# --8<-- [start:access]
def _require_user(info: Info[Any, Any]) -> UserModel:
    user = get_user(info)
    if not isinstance(user, UserModel) or not user.is_authenticated:
        raise ChatError(
            "Authentication required: call the login mutation and send its token "
            "as 'Authorization: Bearer <token>' (or in connection_init as {\"token\": …})."
        )
    return user


def _participant_correspondence(user: UserModel, correspondence_id: Any) -> models.Correspondence:
    correspondence = models.Correspondence.objects.filter(
        pk=_pk(correspondence_id), participants=user
    ).first()
    if correspondence is None:
        raise ChatError(
            f"Correspondence {correspondence_id} does not exist or you are not a participant."
        )
    return correspondence


def _pk(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ChatError(f"{value!r} is not a valid id.") from None


async def _correspondence_for(
    info: Info[Any, Any], correspondence_id: Any
) -> models.Correspondence:
    user = _require_user(info)
    return await sync_to_async(_participant_correspondence)(user, correspondence_id)
    # --8<-- [end:access]


# -- operations ---------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field
    def me(self, info: Info[Any, Any]) -> UserType | None:
        user = get_user(info)
        return cast(UserType, user) if user.is_authenticated else None

    @strawberry.field
    async def correspondences(self, info: Info[Any, Any]) -> list[CorrespondenceType]:
        user = _require_user(info)
        found = await sync_to_async(
            lambda: list(models.Correspondence.objects.filter(participants=user).order_by("id"))
        )()
        return cast(list[CorrespondenceType], found)

    @strawberry.field
    async def my_subscriptions(self, info: Info[Any, Any]) -> list[ChannelSubscription]:
        user = _require_user(info)
        rows = await sync_to_async(
            lambda: list(
                ChannelSubscriptionModel.objects.filter(user=user)
                .order_by("channel__name")
                .values_list("channel__name", "active")
            )
        )()
        return [ChannelSubscription(channel=name, active=active) for name, active in rows]

    @strawberry.field
    async def online(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID
    ) -> list[OnlineMember]:
        """The participants who have the correspondence open now."""
        correspondence = await _correspondence_for(info, correspondence_id)
        found = await sync_to_async(members)(correspondence.channel)
        return [online_member(member) for member in found]

    @strawberry.field
    async def messages(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID
    ) -> list[MessageType]:
        correspondence = await _correspondence_for(info, correspondence_id)
        found = await sync_to_async(
            lambda: list(correspondence.messages.select_related("author", "correspondence"))
        )()
        return cast(list[MessageType], found)


@strawberry.type
class Mutation:
    # --8<-- [start:login]
    @strawberry.mutation
    async def login(self, username: str, password: str) -> LoginPayload:
        user = await sync_to_async(authenticate)(username=username, password=password)
        if user is None or not user.is_active:
            raise ChatError("Wrong username or password.")
        return LoginPayload(token=create_jwt(user), user=cast(UserType, user))
        # --8<-- [end:login]

    @strawberry.mutation
    async def create_correspondence(
        self, info: Info[Any, Any], title: str, participant_usernames: list[str]
    ) -> CorrespondenceType:
        user = _require_user(info)

        @transaction.atomic
        def create() -> models.Correspondence:
            names = set(participant_usernames)
            others = list(User.objects.filter(username__in=names, is_active=True))
            missing = names - {u.username for u in others} - {user.get_username()}
            if missing:
                raise ChatError(f"No such user(s): {', '.join(sorted(missing))}.")
            correspondence = models.Correspondence.objects.create(title=title)
            correspondence.participants.set({user, *others})
            return correspondence

        return cast(CorrespondenceType, await sync_to_async(create)())

    # --8<-- [start:send_message]
    @strawberry.mutation
    async def send_message(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID, body: str
    ) -> MessageType:
        correspondence = await _correspondence_for(info, correspondence_id)
        author = _require_user(info)
        message = await models.Message.objects.acreate(
            correspondence=correspondence, author=author, body=body
        )
        return cast(MessageType, message)
        # --8<-- [end:send_message]

    @strawberry.mutation
    async def edit_message(self, info: Info[Any, Any], id: strawberry.ID, body: str) -> MessageType:
        message = await _own_message(info, id)
        message.body = body
        await message.asave(update_fields=["body"])
        return cast(MessageType, message)

    @strawberry.mutation
    async def subscribe(self, info: Info[Any, Any], channel: str) -> ChannelSubscription:
        return await _set_subscription(info, channel, active=True)

    @strawberry.mutation
    async def unsubscribe(self, info: Info[Any, Any], channel: str) -> ChannelSubscription:
        return await _set_subscription(info, channel, active=False)

    # --8<-- [start:set_typing]
    @strawberry.mutation
    async def set_typing(self, info: Info[Any, Any], correspondence_id: strawberry.ID) -> bool:
        """Tell the others you are typing: an ephemeral event (no row, no history)."""
        correspondence = await _correspondence_for(info, correspondence_id)  # may write here
        user = _require_user(info)
        try:
            await broadcast(
                correspondence.channel, {"username": user.get_username()}, sender=user.pk
            )
        except EphemeralRefused as refused:
            raise ChatError(str(refused)) from None
        return True
        # --8<-- [end:set_typing]

    @strawberry.mutation
    async def delete_message(self, info: Info[Any, Any], id: strawberry.ID) -> strawberry.ID:
        message = await _own_message(info, id)
        await message.adelete()
        return id


# --8<-- [start:set_subscription]
async def _set_subscription(
    info: Info[Any, Any], channel: str, active: bool
) -> ChannelSubscription:
    user = _require_user(info)

    def change() -> ChannelSubscription:
        if active:
            try:
                check_access(user, channel)
            except AccessDenied as denied:
                raise ChatError(str(denied)) from None
            subscription = Channel.objects.get_or_create(name=channel)[0].subscribe(user)
            return ChannelSubscription(channel=channel, active=subscription.active)
        found = Channel.objects.filter(name=channel).first()
        if found is None or found.unsubscribe(user) is None:
            raise ChatError(f"You are not subscribed to channel {channel!r}.")
        return ChannelSubscription(channel=channel, active=False)

    return await sync_to_async(change)()
    # --8<-- [end:set_subscription]


async def _own_message(info: Info[Any, Any], message_id: Any) -> models.Message:
    user = _require_user(info)
    message = (
        await models.Message.objects.filter(pk=_pk(message_id), correspondence__participants=user)
        .select_related("correspondence")
        .afirst()
    )
    if message is None:
        raise ChatError(f"Message {message_id} does not exist or you are not a participant.")
    if message.author_id != user.pk:
        raise ChatError("Only the author of a message may edit or delete it.")
    return message


# --8<-- [start:subscription]
@strawberry.type
class Subscription:
    # --8<-- [start:message_added]
    @strawberry.subscription
    async def message_added(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID
    ) -> AsyncIterator[MessageType]:
        # Access is checked before the stream starts, so a refusal is an `error` message.
        correspondence = await _correspondence_for(info, correspondence_id)
        # shared: a Message reads the same to every participant, so they share one execution.
        return instances(
            models.Message,
            correspondence.channel,
            as_type=MessageType,
            kinds={EventKind.CREATED},
            shared=True,
        )
        # --8<-- [end:message_added]

    # --8<-- [start:correspondence_events]
    @strawberry.subscription
    async def correspondence_events(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID
    ) -> AsyncIterator[MessageEvent]:
        correspondence = await _correspondence_for(info, correspondence_id)
        return stream(correspondence.channel, map=_message_event, shared=True)
        # --8<-- [end:correspondence_events]

    # --8<-- [start:presence]
    @strawberry.subscription
    async def presence(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID
    ) -> AsyncIterator[PresenceChange]:
        """Who has the correspondence open: all of them first, then who comes and goes. The
        subscriber is one of them while subscribed."""
        correspondence = await _correspondence_for(info, correspondence_id)
        user = _require_user(info)
        return presence_stream(
            correspondence.channel, member=user.pk, info=public_info(user), map=presence_change
        )
        # --8<-- [end:presence]

    # --8<-- [start:typing]
    @strawberry.subscription
    async def typing(
        self, info: Info[Any, Any], correspondence_id: strawberry.ID
    ) -> AsyncIterator[Typing]:
        """Who is typing, as they are; nothing of it is kept or replayed."""
        correspondence = await _correspondence_for(info, correspondence_id)
        channel = ephemeral_channel(correspondence.channel)
        return stream(channel, map=typing_of, shared=True)
        # --8<-- [end:typing]

    # --8<-- [start:events]
    @strawberry.subscription
    async def events(self, info: Info[Any, Any]) -> AsyncIterator[ChannelEvent]:
        """Every event of every channel the caller actively follows, following changes live."""
        user = _require_user(info)
        # shared: an event reads the same to everyone allowed to receive it.
        return listen_to_user_subscriptions(user, map=_channel_event, shared=True)
        # --8<-- [end:events]
        # --8<-- [end:subscription]


# --8<-- [start:event_maps]
_NODE_MODELS = {m.publish_label(): m for m in (models.Message, models.Correspondence)}


def _channel_event(event: Event) -> ChannelEvent:
    model = _NODE_MODELS.get(event.model or "")
    return ChannelEvent(
        channel=event.channel,
        kind=ChannelEventKind(event.kind.value),
        node=cast(PublishedNode, model.from_event(event)) if model is not None else None,
        data=JSON(event.data) if event.kind is EventKind.CUSTOM else None,
    )


def _message_event(event: Event) -> MessageEvent | Skip:
    if event.model != models.Message.publish_label():
        return SKIP
    return MessageEvent(
        kind=MessageEventKind(event.kind.value),
        message=cast(MessageType, models.Message.from_event(event)),
    )
    # --8<-- [end:event_maps]

"""``@gql_pubsub.policies.register(pattern)`` access policies, through ``check_access`` and the
example's ``subscribe`` mutation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

from gql_pubsub.auth.policies import AccessDenied, check_access, may_read, register


def unique(name: str) -> str:
    return f"policies-{name}-{uuid.uuid4().hex[:10]}"


# -- 4. registered access policies ---------------------------------------------------------------
# The registry has no way to unregister: every test registers a pattern of its own.


def test_a_registered_policy_decides_who_may_read_the_channels_it_covers(
    make_user: Callable[..., Any],
) -> None:
    """Allowed users pass check_access; others get AccessDenied naming the channel."""
    root = unique("testpolicy")
    member, outsider = make_user("member"), make_user("outsider")
    asked: list[tuple[Any, str]] = []

    def members_only(user: Any, channel: str) -> bool:
        asked.append((user.pk, channel))
        return bool(user.pk == member.pk)

    assert register(f"{root}:*")(members_only) is members_only
    channel = f"{root}:room-1"
    check_access(member, channel)
    with pytest.raises(AccessDenied) as denied:
        check_access(outsider, channel)
    assert str(denied.value) == f"You may not read channel {channel!r}."
    assert may_read(member, channel) and not may_read(outsider, channel)
    assert asked == [(member.pk, channel), (outsider.pk, channel)] * 2
    # Outside the pattern the policy decides nothing: nobody may read that channel.
    assert not may_read(member, f"{root}-elsewhere:room-1")
    assert len(asked) == 4


def test_a_policy_may_refuse_with_its_own_reason(make_user: Callable[..., Any]) -> None:
    """A policy raising AccessDenied("why") makes check_access raise that reason."""
    root = unique("testpolicy-reason")

    @register(f"{root}:*")
    def editors_only(user: Any, channel: str) -> bool:
        raise AccessDenied("Only editors may read drafts.")

    with pytest.raises(AccessDenied, match=r"^Only editors may read drafts\.$"):
        check_access(make_user("writer"), f"{root}:draft")


def test_a_channel_no_policy_covers_is_readable_by_nobody(make_user: Callable[..., Any]) -> None:
    """Not even a superuser may read a channel that no pattern (settings or registered) covers."""
    admin = make_user("root", is_staff=True, is_superuser=True)
    channel = unique("uncovered")
    with pytest.raises(AccessDenied, match="No access policy covers channel"):
        check_access(admin, channel)
    assert not may_read(admin, channel)


def test_the_built_in_policies_deny_everyone_or_allow_the_logged_in(
    make_user: Callable[..., Any],
) -> None:
    """deny refuses even a superuser; allow_authenticated lets any logged-in user in, not others."""
    from django.contrib.auth.models import AnonymousUser

    from gql_pubsub.auth.policies import allow_authenticated, deny

    root = unique("testpolicy-builtin")
    admin = make_user("root", is_staff=True, is_superuser=True)
    register(f"{root}-closed:*")(deny)
    register(f"{root}-members:*")(allow_authenticated)
    assert not may_read(admin, f"{root}-closed:x")
    assert may_read(make_user("member"), f"{root}-members:x")
    assert not may_read(AnonymousUser(), f"{root}-members:x")
    assert not may_read(make_user("gone", is_active=False), f"{root}-members:x")


SUBSCRIBE = "mutation ($c: String!) { subscribe(channel: $c) { channel active } }"


@pytest.fixture
def policy_users(
    make_user: Callable[..., Any], token_for: Callable[[Any], str]
) -> tuple[str, str, str]:
    """A unique registered pattern, with the tokens of a user it allows and one it refuses."""
    root = unique("testpolicy-view")
    allowed = make_user("allowed")

    @register(f"{root}:*")
    def only_allowed(user: Any, channel: str) -> bool:
        return bool(user.pk == allowed.pk)

    return root, token_for(allowed), token_for(make_user("refused"))


async def test_the_example_subscribe_mutation_obeys_a_registered_policy(
    policy_users: tuple[str, str, str],
) -> None:
    """Through the example's view: the allowed user subscribes, the other gets the reason."""
    root, allowed, refused = policy_users
    channel = f"{root}:news"
    client = AsyncClient()
    bodies = []
    for token in (allowed, refused):
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            response = await client.post(
                "/graphql/",
                {"query": SUBSCRIBE, "variables": {"c": channel}},
                "application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.content
        bodies.append(response.json())
    assert bodies[0] == {"data": {"subscribe": {"channel": channel, "active": True}}}
    assert bodies[1]["data"] is None
    assert bodies[1]["errors"][0]["message"] == f"You may not read channel {channel!r}."

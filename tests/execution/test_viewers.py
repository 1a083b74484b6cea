"""Which fields of a subscription can read the viewer: the rule that decides what is shared."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
import strawberry
import strawberry_django
from django.contrib.auth import get_user_model
from graphql import parse
from strawberry.permission import BasePermission
from strawberry.schema_directive import Location
from strawberry.types import Info

from gql_pubsub import VIEWER_DEPENDENT, VIEWER_INDEPENDENT
from gql_pubsub.execution.viewers import per_viewer_fields


class IsAnyone(BasePermission):
    message = "never refused"

    def has_permission(self, source: Any, info: Info[Any, Any], **kwargs: Any) -> bool:
        return True


@strawberry_django.type(get_user_model(), name="Person")
class Person:
    username: strawberry.auto


@strawberry_django.type(get_user_model(), name="FilteredPerson")
class FilteredPerson:
    username: strawberry.auto

    @classmethod
    def get_queryset(cls, queryset: Any, info: Info[Any, Any], **kwargs: Any) -> Any:
        return queryset.filter(pk=info.context.user.pk)  # who asks decides what exists


@strawberry.type
class Box:
    n: int

    @strawberry.field
    def reads(self, info: Info[Any, Any]) -> str:
        return str(info.context.user)


@strawberry.interface
class Shape:
    n: int


@strawberry.type
class Square(Shape):
    side: int


@strawberry.schema_directive(locations=[Location.FIELD_DEFINITION])
class Tagged:
    """A schema directive on a field: not something the rule can read."""


@strawberry.type
class Item:
    n: int
    box: Box
    square: Square
    person: Person
    filtered: FilteredPerson
    shape: Shape
    told: int = strawberry.field(default=0, metadata=VIEWER_DEPENDENT)
    guarded: int = strawberry.field(default=0, permission_classes=[IsAnyone])
    tagged: int = strawberry.field(default=0, directives=[Tagged()])

    @strawberry.field
    def resolved(self) -> int:
        return self.n

    @strawberry.field(metadata=VIEWER_INDEPENDENT)
    def declared(self) -> int:
        return self.n


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def item(self) -> AsyncGenerator[Item, None]:
        square = Square(n=1, side=1)
        yield Item(n=1, box=Box(n=1), square=square, person=None, filtered=None, shape=square)  # type: ignore[arg-type]

    @strawberry.subscription
    async def shape(self) -> AsyncGenerator[Shape, None]:
        yield Square(n=1, side=1)


schema = strawberry.Schema(query=Query, subscription=Subscription, types=[Square])


def fields(document: str, operation_name: str | None = None) -> set[str] | None:
    """The per-viewer fields' response names, or None when the whole operation is per viewer."""
    found = per_viewer_fields(schema._schema, parse(document), operation_name)
    if found is None:
        return None
    return {(node.alias or node.name).value for node in found.values()}


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("n box { n } person { username } __typename", set()),
        ("n declared", set()),
        ("n resolved", {"resolved"}),
        ("n told", {"told"}),
        ("n guarded", {"guarded"}),
        ("n box { n reads }", {"reads"}),
        ("filtered { username }", {"filtered"}),
        ("shape { n }", {"shape"}),
        ("n again: resolved", {"again"}),
        ("n resolved @skip(if: false) box @include(if: true) { n }", {"resolved"}),
        ("... on Item { n resolved }", {"resolved"}),
        ("... { n box { reads } }", {"reads"}),
        ("...Parts ...Parts", {"resolved"}),
        ("n box @custom { n }", {"box"}),
        ("n tagged", {"tagged"}),
        ("...Parts ...Parts told", {"resolved", "told"}),
        ("...Outer", {"resolved"}),
        ("... { ...Parts }", {"resolved"}),
        ("...Conditioned", {"resolved"}),
    ],
    ids=[
        "plain attributes and a model field",
        "a resolver declared independent",
        "a resolver",
        "a field declared dependent",
        "a permission class",
        "a resolver under a plain object",
        "a type with get_queryset",
        "an interface",
        "an alias",
        "include and skip",
        "an inline fragment on the type",
        "an inline fragment without a type",
        "a fragment spread twice",
        "a directive it does not know, on a field",
        "a schema directive on the field",
        "a fragment spread twice, then a field",
        "a fragment in a fragment",
        "a fragment in an inline fragment",
        "an inline fragment on the type in a fragment",
    ],
)
def test_the_fields_that_can_read_the_viewer_are_found_and_nothing_else(
    selection: str, expected: set[str]
) -> None:
    document = (
        f"subscription {{ item {{ {selection} }} }}"
        " fragment Parts on Item { n resolved }"
        " fragment Outer on Item { ...Parts }"
        " fragment Conditioned on Item { ... on Item { resolved } }"
    )
    assert fields(document) == expected


@pytest.mark.parametrize(
    "document",
    [
        "subscription { shape { n } }",
        "subscription { shape { ... on Square { side } } }",
        "subscription { item { square { ... on Shape { n } } } }",
        "query { ok }",
        "subscription Named { item { n } }",
        "subscription { item @custom { n } }",
        "subscription { item { ... @custom { n } } }",
        "subscription { item { ...Missing } }",
    ],
    ids=[
        "an interface at the root",
        "a type condition at the root",
        "a type condition on another type",
        "not a subscription",
        "another operation's name",
        "a directive it does not know, on the root field",
        "a directive it does not know, on a fragment",
        "an unknown fragment",
    ],
)
def test_a_result_whose_shape_may_depend_on_the_viewer_is_per_viewer_whole(document: str) -> None:
    name = "Other" if "Named" in document else None
    assert fields(document, name) is None


def test_the_same_document_gives_the_same_nodes_once_per_field() -> None:
    document = parse("subscription { item { n a: resolved b: resolved box { reads } } }")
    found = per_viewer_fields(schema._schema, document, None)
    assert found is not None
    assert sorted(
        node.alias.value if node.alias else node.name.value for node in found.values()
    ) == [
        "a",
        "b",
        "reads",
    ]
    assert all(id(node) == key for key, node in found.items())

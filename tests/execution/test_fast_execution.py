"""A grouped subscription's execution shortcuts (sub-selections collected once per operation,
plain attribute fields read without Strawberry's resolver chain, a selection of plain fields
encoded without graphql-core's execution) give exactly what graphql-core's own execution gives:
the same data, the same errors at the same paths, event after event."""

from __future__ import annotations

import datetime
import enum
from collections.abc import AsyncIterator
from typing import Any

import pytest
import strawberry
from graphql import Executor, execute_subscription_event

from gql_pubsub.execution.engine import Engine, validation_rules
from gql_pubsub.execution.plans import flat_plan
from gql_pubsub.execution.request import OperationRequest
from gql_pubsub.execution.results import encode_result


@strawberry.enum
class Mood(enum.Enum):
    CALM = "calm"
    LOUD = "loud"


@strawberry.type
class Item:
    label: str
    rank: int | None


@strawberry.type
class Shape:
    id: strawberry.ID
    text: str
    count: int
    ratio: float
    flag: bool
    maybe: str | None
    mood: Mood
    when: datetime.datetime
    items: list[Item]
    child: Shape | None

    @property
    def broken(self) -> str:
        raise RuntimeError("the property failed")

    @strawberry.field
    def computed(self) -> str:
        return self.text.upper()


@strawberry.type
class Broken:
    id: strawberry.ID
    broken: str  # a property of the object raises
    required: str  # holds None
    count: int  # holds what Int cannot serialize


class BrokenSource:
    def __init__(self, n: int) -> None:
        self.id = str(n)
        self.required = None
        self.count = [2**40, "many", float("nan")][n % 3]

    @property
    def broken(self) -> str:
        raise RuntimeError(f"the property failed for {self.id}")


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def shape(self) -> AsyncIterator[Shape]:  # pragma: no cover - executed per event only
        yield shape(0)

    @strawberry.subscription
    async def broken(self) -> AsyncIterator[Broken]:  # pragma: no cover
        yield BrokenSource(0)  # type: ignore[misc]


schema = strawberry.Schema(query=Query, subscription=Subscription)


def shape(n: int, depth: int = 1) -> Shape:
    return Shape(
        id=strawberry.ID(str(n)),
        text=f'text {n} \u00e9"\\',
        count=n * 7 - 3,
        ratio=n / 3,
        flag=n % 2 == 0,
        maybe=None if n % 2 else f"maybe {n}",
        mood=Mood.CALM if n % 2 else Mood.LOUD,
        when=datetime.datetime(2026, 1, 1 + n % 28, tzinfo=datetime.UTC),
        items=[Item(label=f"{n}.{k}", rank=None if k % 2 else k) for k in range(n % 4)],
        child=shape(n + 1, depth - 1) if depth else None,
    )


FLAT = [
    "subscription { shape { id text count ratio flag maybe } }",
    "subscription { s: shape { a: text b: text __typename n: count mood when } }",
    """subscription($on: Boolean!) { shape { ...Flat ... on Shape { flag } } }
       fragment Flat on Shape { id text @include(if: $on) count @skip(if: $on) }""",
    "subscription { broken { id broken } }",
    "subscription { broken { id required } }",
    "subscription { broken { id count } }",
]
"""Selections of plain fields only: each has a flat plan (the last three's events all fail)."""

DOCUMENTS = [
    *FLAT,
    "subscription { shape { a: text b: text c: count __typename computed } }",
    "subscription { shape { items { label rank } child { id text items { rank } } } }",
    """subscription($on: Boolean!) { shape { ...Parts child { ...Parts } } }
       fragment Parts on Shape { id text @include(if: $on) count @skip(if: $on) }""",
]


def grouped_executor(
    engine: Engine, document: str, variables: dict[str, Any] | None = None
) -> tuple[Any, Executor[Any]]:
    """The parsed document and the grouped executor the engine builds for it."""
    parsed = engine.prepare(document)
    assert not isinstance(parsed, list), parsed
    built = engine.build(parsed, {}, OperationRequest("1", document, variables, None, None))
    assert isinstance(built, Executor)
    return parsed, built


@pytest.mark.parametrize("document", DOCUMENTS)
@pytest.mark.parametrize("variables", [{"on": True}, {"on": False}])
async def test_a_grouped_execution_gives_what_graphql_cores_gives_event_after_event(
    document: str, variables: dict[str, Any]
) -> None:
    engine = Engine(schema, validation_rules(), 16)
    used = variables if "$on" in document else None
    parsed, grouped = grouped_executor(engine, document, used)
    reference = Executor.build(schema._schema, parsed, context_value={}, raw_variable_values=used)
    assert isinstance(reference, Executor)
    assert (flat_plan(grouped) is not None) == (document in FLAT)
    for n in range(7):  # from the second event on, the memo answers
        root: Any = BrokenSource(n) if "broken" in document else shape(n)
        if n == 6:
            root = None  # for a non-null field: graphql-core's error, whatever the path
        expected = execute_subscription_event(reference.build_per_event_executor(root))
        assert not reference.is_awaitable(expected)
        assert await engine.execute_event(grouped, root) == encode_result(expected)  # type: ignore[arg-type]


async def test_a_plan_that_cannot_complete_an_event_is_dropped_and_plain_ones_keep_theirs() -> None:
    engine = Engine(schema, validation_rules(), 16)
    _, plain = grouped_executor(engine, FLAT[0])
    _, dated = grouped_executor(engine, FLAT[1])  # FLAT[1] selects a datetime
    for n in range(3):
        await engine.execute_event(plain, shape(n))
        await engine.execute_event(dated, shape(n))
    assert flat_plan(plain) is not None
    assert flat_plan(dated) is None  # tried once: its events go the general way from then on

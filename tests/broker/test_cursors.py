"""Cursors, without a server: what a client holds to resume, and the payloads around it."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from gql_pubsub.broker.cursors import (
    REFETCH,
    Cursor,
    InvalidCursor,
    live_payload,
    refetch_payload,
    start_payload,
    with_cursor,
)
from gql_pubsub.core.events import START, Offset


def test_a_cursor_survives_its_round_trip_through_the_client() -> None:
    """Epoch, places (START included) and the second it was issued come back as they went."""
    epochs = {"room:1": "e1", "quiet": "e1"}
    cursor = Cursor(epochs, {"room:1": Offset(17, 3), "quiet": START}, issued=1700000000.9)
    back = Cursor.decode(cursor.encode())
    assert back == Cursor(epochs, {"room:1": Offset(17, 3), "quiet": START}, issued=1700000000.0)
    assert "=" not in cursor.encode()  # URL-safe, unpadded: opaque text for any client


def test_a_cursor_is_base64_of_its_versioned_layout() -> None:
    """The layout is [1, epoch, issued, {channel: "ms-seq"}] when its channels share one epoch
    (one Redis), else [2, {channel: epoch}, issued, {channel: "ms-seq"}] (a cluster's slots)."""

    def layout(cursor: Cursor) -> object:
        text = cursor.encode()
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))

    shared = Cursor({"c": "e", "d": "e"}, {"c": Offset(5, 0), "d": START}, issued=42.0)
    assert layout(shared) == [1, "e", 42, {"c": "5-0", "d": "0-0"}]
    apart = Cursor({"c": "e", "d": "f"}, {"c": Offset(5, 0), "d": START}, issued=42.0)
    assert layout(apart) == [2, {"c": "e", "d": "f"}, 42, {"c": "5-0", "d": "0-0"}]
    assert Cursor.decode(apart.encode()) == apart


def _encoded(raw: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        _encoded([2, "e", 1, {}]),  # another version
        _encoded([1, 5, 1, {}]),  # epoch not a string
        _encoded([1, "e", 1, []]),  # places not an object
        _encoded([1, "e", 1, {"c": "x-y"}]),  # an offset that is not one
        _encoded([1, "e", 1, {"c": "-1-0"}]),  # negative
        _encoded([1, "e", {}]),  # too short
        _encoded({"a": 1}),
    ],
)
def test_anything_else_is_refused_saying_what_to_send(text: str) -> None:
    with pytest.raises(InvalidCursor, match=r"send back the extensions\.cursor of the last"):
        Cursor.decode(text)


def test_a_cursor_that_is_not_text_is_refused_by_type() -> None:
    with pytest.raises(InvalidCursor, match="must be a cursor string or null, not int"):
        Cursor.decode(42)


def test_the_payloads_around_a_cursor_are_the_documented_json() -> None:
    """with_cursor completes a payload body; live and REFETCH payloads as the README shows."""
    assert json.loads(with_cursor('{"data":{"a":1}', "C")) == {
        "data": {"a": 1},
        "extensions": {"cursor": "C"},
    }
    assert json.loads(live_payload("C")) == {"extensions": {"cursor": "C"}}
    assert json.loads(refetch_payload("lost", "C")) == {
        "data": None,
        "errors": [{"message": "lost", "extensions": {"code": REFETCH}}],
        "extensions": {"cursor": "C"},
    }
    assert "extensions" not in json.loads(refetch_payload("lost", None))
    assert REFETCH == "REFETCH"


@pytest.mark.parametrize("name", ["c", "cc", "ccc", "cccc"])
def test_cursors_of_every_length_come_back_unpadded(name: str) -> None:
    """Whatever the base64 padding would be (0, 1 or 2 '='), the text has none and decodes."""
    cursor = Cursor({name: "e"}, {name: Offset(1, 0)}, issued=1.0)
    text = cursor.encode()
    assert not text.endswith("=") and Cursor.decode(text) == cursor


def test_an_unknown_layout_is_named_in_the_refusal() -> None:
    with pytest.raises(InvalidCursor, match=r"\(unknown layout\)$"):
        Cursor.decode(_encoded([2, "e", 1, {}]))


def test_the_first_next_is_live_or_refetch_naming_the_lost_channels() -> None:
    assert start_payload("C", []) == live_payload("C")
    signal = json.loads(start_payload("C", ["room:1"]))
    assert signal["errors"][0]["extensions"]["code"] == REFETCH
    assert signal["errors"][0]["message"] == (
        "The history no longer holds every event since your cursor on ['room:1']: "
        "refetch, then go on."
    )
    assert signal["extensions"] == {"cursor": "C"}

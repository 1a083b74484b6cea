"""The graphql-transport-ws state machine, without a socket."""

from __future__ import annotations

import json

import pytest

from gql_pubsub.transports.websocket import protocol
from gql_pubsub.transports.websocket.protocol import (
    Close,
    CloseCode,
    Complete,
    ConnectionState,
    Init,
    Ping,
    Pong,
    ProtocolConnection,
    Subscribe,
    next_prefix,
)

SUBSCRIBE = '{"id":"1","type":"subscribe","payload":{"query":"{ me { id } }"}}'


def acknowledged() -> ProtocolConnection:
    connection = ProtocolConnection()
    assert connection.receive('{"type":"connection_init"}') == Init({})
    connection.acknowledge()
    return connection


def test_init_then_subscribe_then_complete() -> None:
    """The happy path yields Init, Subscribe and Complete actions."""
    connection = acknowledged()
    action = connection.receive(SUBSCRIBE)
    assert action == Subscribe("1", "{ me { id } }", None, None, None)
    assert connection.operations == ["1"]
    assert connection.receive('{"id":"1","type":"complete"}') == Complete("1")
    assert connection.operations == []
    assert connection.state is ConnectionState.ACKNOWLEDGED


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00binary", CloseCode.BAD_REQUEST),
        ("not json", CloseCode.BAD_REQUEST),
        ("[]", CloseCode.BAD_REQUEST),
        ('{"type":"nonsense"}', CloseCode.BAD_REQUEST),
        ('{"type":"connection_init","payload":"string"}', CloseCode.BAD_REQUEST),
        ('{"id":"","type":"subscribe","payload":{"query":"{a}"}}', CloseCode.BAD_REQUEST),
        ('{"id":"1","type":"subscribe","payload":{"query":1}}', CloseCode.BAD_REQUEST),
        (
            '{"id":"1","type":"subscribe","payload":{"query":"{a}","variables":[]}}',
            CloseCode.BAD_REQUEST,
        ),
        (SUBSCRIBE, CloseCode.UNAUTHORIZED),
    ],
)
def test_bad_frames_before_ack_close_with_the_specs_code(
    frame: str | bytes, code: CloseCode
) -> None:
    """Each malformed or out-of-order frame maps to one close code, and the state is CLOSED."""
    connection = ProtocolConnection()
    action = connection.receive(frame)
    assert isinstance(action, Close) and action.code == code
    assert connection.state is ConnectionState.CLOSED


def test_a_second_init_is_too_many() -> None:
    connection = acknowledged()
    action = connection.receive('{"type":"connection_init"}')
    assert action == Close(
        CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests"
    )


def test_a_running_operation_id_cannot_be_reused_but_a_finished_one_can() -> None:
    connection = acknowledged()
    connection.receive(SUBSCRIBE)
    assert connection.finish("1") is True  # the server must send `complete`
    assert isinstance(connection.receive(SUBSCRIBE), Subscribe)
    action = connection.receive(SUBSCRIBE)
    assert isinstance(action, Close) and action.code == CloseCode.SUBSCRIBER_ALREADY_EXISTS


def test_an_operation_the_client_completed_needs_no_complete_from_the_server() -> None:
    connection = acknowledged()
    connection.receive(SUBSCRIBE)
    connection.receive('{"id":"1","type":"complete"}')
    assert connection.finish("1") is False


def test_ping_is_allowed_before_init_and_the_init_timeout_only_fires_without_init() -> None:
    connection = ProtocolConnection()
    assert connection.receive('{"type":"ping"}') == Ping(None)
    connection.receive('{"type":"connection_init","payload":{"token":"t"}}')
    assert connection.init_timed_out() is None
    fresh = ProtocolConnection()
    timeout = fresh.init_timed_out()
    assert timeout is not None and timeout.code == CloseCode.CONNECTION_INITIALISATION_TIMEOUT


def test_acknowledging_twice_is_a_programming_error() -> None:
    connection = acknowledged()
    with pytest.raises(RuntimeError, match="Expected state INITIALISING, but got ACKNOWLEDGED"):
        connection.acknowledge()


def test_a_rejected_init_closes_with_4403_and_the_reason() -> None:
    connection = ProtocolConnection()
    connection.receive('{"type":"connection_init"}')
    close = connection.reject("token expired")
    assert (close.code, close.reason) == (CloseCode.FORBIDDEN, "Forbidden: token expired")
    assert connection.state is ConnectionState.CLOSED


def test_a_long_rejection_reason_is_cut_to_fit_a_close_frame() -> None:
    """A close frame carries at most 123 bytes of reason; the cut never splits a character."""
    connection = ProtocolConnection()
    connection.receive('{"type":"connection_init"}')
    reason = connection.reject("é" * 100).reason
    assert len(reason.encode()) <= 123
    assert reason == "Forbidden: " + "é" * 56


def test_a_subscribe_carries_every_field_the_client_sent() -> None:
    """query, variables, operationName and extensions reach the server as sent."""
    connection = acknowledged()
    frame = (
        '{"id":"7","type":"subscribe","payload":{"query":"query Q { a }",'
        '"variables":{"x":1},"operationName":"Q","extensions":{"after":null}}}'
    )
    assert connection.receive(frame) == Subscribe(
        "7", "query Q { a }", {"x": 1}, "Q", {"after": None}
    )


@pytest.mark.parametrize("kind", ["ping", "pong"])
def test_ping_and_pong_carry_their_payload(kind: str) -> None:
    """The optional payload of ping/pong is passed on (an object), or None."""
    connection = acknowledged()
    action = connection.receive(f'{{"type":"{kind}","payload":{{"t":1}}}}')
    assert action == (Ping if kind == "ping" else Pong)({"t": 1})
    assert connection.receive(f'{{"type":"{kind}"}}') == (Ping if kind == "ping" else Pong)(None)
    refused = connection.receive(f'{{"type":"{kind}","payload":[1]}}')
    assert refused == Close(CloseCode.BAD_REQUEST, "'payload' must be an object or null")


SUB = '{{"id":"1","type":"subscribe","payload":{payload}}}'


@pytest.mark.parametrize(
    ("frame", "close"),
    [
        (b"\x00", Close(CloseCode.BAD_REQUEST, "Binary messages are not supported")),
        ("{", Close(CloseCode.BAD_REQUEST, "Message is not valid JSON")),
        ("[]", Close(CloseCode.BAD_REQUEST, "Message must be a JSON object")),
        ('{"type":"nope"}', Close(CloseCode.BAD_REQUEST, "Unexpected message type 'nope'")),
        ('{"type":1}', Close(CloseCode.BAD_REQUEST, "Message has no valid 'type'")),
        (
            '{"id":"","type":"complete"}',
            Close(CloseCode.BAD_REQUEST, "Message 'id' must be a non-empty string"),
        ),
        (
            SUB.format(payload="[]"),
            Close(CloseCode.BAD_REQUEST, "Subscribe payload must be an object"),
        ),
        (
            SUB.format(payload='{"query":1}'),
            Close(CloseCode.BAD_REQUEST, "Subscribe payload 'query' must be a string"),
        ),
        (
            SUB.format(payload='{"query":"{a}","operationName":1}'),
            Close(
                CloseCode.BAD_REQUEST, "Subscribe payload 'operationName' must be a string or null"
            ),
        ),
        (
            SUB.format(payload='{"query":"{a}","extensions":"x"}'),
            Close(CloseCode.BAD_REQUEST, "'extensions' must be an object or null"),
        ),
        (
            '{"type":"connection_init"}',
            Close(CloseCode.TOO_MANY_INITIALISATION_REQUESTS, "Too many initialisation requests"),
        ),
    ],
)
def test_each_refusal_says_exactly_what_was_wrong(frame: str | bytes, close: Close) -> None:
    """After the ack, each bad frame closes with its code and a reason naming the fault."""
    connection = acknowledged()
    assert connection.receive(frame) == close
    assert connection.receive('{"type":"ping"}') == Close(
        CloseCode.BAD_REQUEST, "Connection is closed"
    )


def test_subscribe_before_the_ack_and_a_reused_id_are_refused_by_name() -> None:
    """4401 "Unauthorized" before the ack; 4409 naming the id that is already running."""
    assert ProtocolConnection().receive(SUBSCRIBE) == Close(CloseCode.UNAUTHORIZED, "Unauthorized")
    connection = acknowledged()
    connection.receive(SUBSCRIBE)
    assert connection.receive(SUBSCRIBE) == Close(
        CloseCode.SUBSCRIBER_ALREADY_EXISTS, "Subscriber for 1 already exists"
    )


def test_the_init_timeout_closes_only_a_socket_that_never_sent_init() -> None:
    """4408 while awaiting init; nothing once init came (acknowledged or not)."""
    waiting = ProtocolConnection()
    assert waiting.init_timed_out() == Close(
        CloseCode.CONNECTION_INITIALISATION_TIMEOUT, "Connection initialisation timeout"
    )
    assert waiting.state is ConnectionState.CLOSED
    initialising = ProtocolConnection()
    initialising.receive('{"type":"connection_init"}')
    assert initialising.init_timed_out() is None
    assert acknowledged().init_timed_out() is None


def test_the_ack_frame_acknowledges_and_ping_pong_frames_are_the_specs() -> None:
    connection = ProtocolConnection()
    connection.receive('{"type":"connection_init"}')
    assert json.loads(connection.ack()) == {"type": "connection_ack"}
    assert connection.state is ConnectionState.ACKNOWLEDGED
    assert json.loads(protocol.PING) == {"type": "ping"}
    assert json.loads(protocol.PONG) == {"type": "pong"}


@pytest.mark.parametrize("op_id", ["1", 'a "quoted" \\ id', "é✓"])
def test_next_frames_are_the_prefix_a_payload_and_a_brace(op_id: str) -> None:
    """A payload encoded once becomes any operation's ``next`` by splicing its prefix."""
    frame = next_prefix(op_id) + '{"data":{"n":1}}' + "}"
    assert json.loads(frame) == {"id": op_id, "type": "next", "payload": {"data": {"n": 1}}}


def test_the_server_completes_an_operation_once_with_its_error_first() -> None:
    connection = acknowledged()
    connection.receive(SUBSCRIBE)
    frames = connection.complete("1", "Access to 'c' was revoked.")
    assert [json.loads(frame) for frame in frames] == [
        {
            "id": "1",
            "type": "next",
            "payload": {"data": None, "errors": [{"message": "Access to 'c' was revoked."}]},
        },
        {"id": "1", "type": "complete"},
    ]
    assert connection.complete("1") == []
    assert connection.error("1", [{"message": "late"}]) is None
    connection.receive(SUBSCRIBE)  # the id may be used again once ended
    assert [json.loads(f) for f in connection.complete("1")] == [{"id": "1", "type": "complete"}]


def test_an_error_frame_ends_the_operation_and_nothing_follows_it() -> None:
    connection = acknowledged()
    connection.receive(SUBSCRIBE)
    frame = connection.error("1", [{"message": "Cannot query field 'x'."}])
    assert frame is not None
    assert json.loads(frame) == {
        "id": "1",
        "type": "error",
        "payload": [{"message": "Cannot query field 'x'."}],
    }
    assert connection.complete("1") == []


def test_nothing_is_sent_for_an_operation_the_client_completed_or_after_a_close() -> None:
    connection = acknowledged()
    connection.receive(SUBSCRIBE)
    connection.receive('{"id":"1","type":"complete"}')
    assert connection.complete("1") == []
    assert connection.error("1", [{"message": "x"}]) is None
    connection.receive(SUBSCRIBE)
    connection.receive("not json")  # closes
    assert connection.complete("1") == []


def test_an_unknown_type_is_quoted_cut_to_64_characters() -> None:
    """A huge `type` does not make a huge close reason: its first 64 characters are quoted."""
    close = acknowledged().receive('{"type":"' + "x" * 100 + '"}')
    assert close == Close(CloseCode.BAD_REQUEST, f"Unexpected message type {'x' * 64!r}")


def test_a_refusal_reason_is_cut_to_a_close_frame_on_a_character_boundary() -> None:
    """4403's reason fits 123 bytes; a cut inside a multi-byte character drops that character."""
    connection = ProtocolConnection()
    connection.receive('{"type":"connection_init"}')
    close = connection.reject("a" + "é" * 100)  # "Forbidden: a" is 12 bytes, then 2 each
    assert close.code == CloseCode.FORBIDDEN
    assert close.reason == "Forbidden: a" + "é" * 55  # 12 + 110 bytes; the 56th é is cut in two

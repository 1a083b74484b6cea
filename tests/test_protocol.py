"""The graphql-transport-ws state machine, without a socket."""

from __future__ import annotations

import pytest

from gql_pubsub.protocol import (
    Close,
    CloseCode,
    Complete,
    ConnectionState,
    Init,
    Ping,
    ProtocolConnection,
    Subscribe,
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
    assert connection.operations == {"1"}
    assert connection.receive('{"id":"1","type":"complete"}') == Complete("1")
    assert connection.operations == set()
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

"""Test a schema's subscriptions without a server: a graphql-transport-ws client that talks to
the ASGI application in-process (as Channels' ``WebsocketCommunicator`` does for consumers).

    application = get_asgi_application("myproject.schema.schema")
    async with lifespan(application), GraphQLTestClient(application) as client:
        await client.init({"token": token})
        op = await client.subscribe('subscription { messageAdded(room: "a") { body } }')
        await client.live("room:a")  # the subscription has started
        await Message.objects.acreate(room="a", body="hi")
        assert await client.next(op) == {"data": {"messageAdded": {"body": "hi"}}}

The broker is the process's (``get_broker()``) and serves one event loop at a time: run the
applications' ``lifespan`` on the test's loop (it runs while any of them does). Every wait is
bounded by ``timeout`` seconds. The client's transport applies back-pressure as uvicorn's
does (a bounded buffer behind a flow-control flag), so slow-reader behaviour is the served one.
"""

from gql_pubsub.testing.client import GraphQLTestClient, OperationCompleted, OperationFailed
from gql_pubsub.testing.lifespan import lifespan
from gql_pubsub.testing.sockets import ConnectionClosed, HandshakeRefused

__all__ = [
    "ConnectionClosed",
    "GraphQLTestClient",
    "HandshakeRefused",
    "OperationCompleted",
    "OperationFailed",
    "lifespan",
]

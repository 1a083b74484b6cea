"""The example's GraphQL schema."""

# --8<-- [start:schema]
from example.chat.schema import ChatError, Mutation, Query, Subscription
from gql_pubsub import Schema

schema = Schema(
    query=Query, mutation=Mutation, subscription=Subscription, expected_errors=(ChatError,)
)
# --8<-- [end:schema]

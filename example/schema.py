"""The example's GraphQL schema."""

import strawberry

from example.chat.schema import Mutation, Query, Subscription

schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)

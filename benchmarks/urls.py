"""The benchmark server's HTTP: the GraphQL view, for subscriptions over HTTP (http_fanout.py)."""

from django.urls import path

from benchmarks.app import schema
from gql_pubsub import GraphQLView

urlpatterns = [path("graphql", GraphQLView.as_view(schema=schema, graphql_ide=None))]

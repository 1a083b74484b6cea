"""URLs: the admin, and GraphQL over HTTP (the WebSocket side is routed by gql_pubsub.asgi)."""

# --8<-- [start:urls]
from django.contrib import admin
from django.urls import path

from gql_pubsub import GraphQLView

from .schema import schema

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql/", GraphQLView.as_view(schema=schema)),
]
# --8<-- [end:urls]

"""ASGI entry point: ``uvicorn example.asgi:application``."""

# --8<-- [start:asgi]
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

from gql_pubsub import get_asgi_application

application = get_asgi_application("example.schema.schema")
# --8<-- [end:asgi]

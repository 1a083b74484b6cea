"""The example's settings with a misspelt GQL_PUBSUB key (for the system check's test)."""

from example.settings import *  # noqa: F403
from example.settings import GQL_PUBSUB

GQL_PUBSUB = {**GQL_PUBSUB, "BROKR_URL": "redis://localhost:6379/0"}

"""The example's settings with no LOGGING, as a fresh ``startproject`` has them (for the console
log's tests); ROOT_LOG_LEVEL set: a project that configures only the root logger, whose handler
writes ``root <LEVEL> <logger>: <message>`` to stdout at that level."""

import os

from example.settings import *  # noqa: F403

LOGGING = {}

if os.environ.get("ROOT_LOG_LEVEL"):
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"root": {"format": "root %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "root": {
                "class": "logging.StreamHandler",
                "formatter": "root",
                "stream": "ext://sys.stdout",
                "level": os.environ["ROOT_LOG_LEVEL"],
            }
        },
        "root": {"handlers": ["root"], "level": os.environ["ROOT_LOG_LEVEL"]},
    }

from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register


class ChatConfig(AppConfig):
    name = "example.chat"
    label = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        register(check_secret_key, "security")


def check_secret_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """With DEBUG off, the example refuses its public development SECRET_KEY."""
    from example.settings import DEV_SECRET

    if settings.DEBUG or settings.SECRET_KEY != DEV_SECRET:
        return []
    return [
        Error(
            "SECRET_KEY is the example's public development default and DEBUG is off.",
            hint="Set DJANGO_SECRET_KEY in the environment to a random value of 50+ characters.",
            id="example.E001",
        )
    ]

"""Print a JWT for a user, for a quick start: ``TOKEN=$(python manage.py gql_pubsub_token alice)``.

The token is ``create_jwt``'s (it lives ``JWT_LIFETIME`` seconds unless ``--lifetime`` says
otherwise) and is all that is printed on stdout.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from gql_pubsub.auth.tokens import create_jwt, jwt_user
from gql_pubsub.conf import get_settings

JWT_AUTH = "gql_pubsub.auth.jwt_user"


class Command(BaseCommand):
    help = "Print a JWT that authenticates <username> to gql_pubsub (nothing else on stdout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token names (USERNAME_FIELD).")
        parser.add_argument(
            "--lifetime",
            type=float,
            help="Seconds the token lives (default: GQL_PUBSUB['JWT_LIFETIME']).",
        )
        parser.add_argument(
            "--create",
            action="store_true",
            help="Create the user (with no usable password) if it does not exist.",
        )

    def handle(
        self, *args: Any, username: str, lifetime: float | None, create: bool, **options: Any
    ) -> None:
        _require_jwt_auth()
        if lifetime is not None and lifetime <= 0:
            raise CommandError(f"--lifetime must be a positive number of seconds, not {lifetime}.")
        user = _user(username, create=create)
        if not getattr(user, "is_active", True):
            raise CommandError(
                f"User {username!r} is inactive: its token would be refused. Activate it "
                "(is_active, e.g. in the admin) first."
            )
        self.stdout.write(create_jwt(user, lifetime=lifetime))


def _require_jwt_auth() -> None:
    """Refuse unless ``TOKEN_AUTH`` is the JWT one, with a shared secret: another would refuse
    the token printed, and with RS/ES keys this server holds no key that signs."""
    settings = get_settings()
    path = settings.TOKEN_AUTH
    try:
        accepts_jwt = import_string(path) is jwt_user
    except ImportError:
        accepts_jwt = False
    if not accepts_jwt:
        raise CommandError(
            f"GQL_PUBSUB['TOKEN_AUTH'] is {path!r}, which would not accept a JWT from this "
            f"command. Set it to {JWT_AUTH!r} (the default), or make tokens the way {path!r} "
            "accepts (e.g. a DRF token with `python manage.py drf_create_token <username>`)."
        )
    algorithm = settings.JWT_ALGORITHMS[0]
    if not algorithm.startswith("HS"):
        raise CommandError(
            f"GQL_PUBSUB['JWT_ALGORITHMS'] signs with {algorithm!r}: JWT_SECRET is the public "
            "key that verifies tokens, and cannot sign one. Get a token from your identity "
            "provider (it holds the private key)."
        )


def _user(username: str, *, create: bool) -> Any:
    """The user named ``username``; created with no usable password if asked and missing."""
    model = get_user_model()
    manager = model._default_manager
    try:
        return manager.get_by_natural_key(username)
    except model.DoesNotExist:
        if not create:
            raise CommandError(
                f"No user {username!r}: create it with `python manage.py createsuperuser` "
                "or pass `--create`."
            ) from None
    user = model(**{model.USERNAME_FIELD: model.normalize_username(username)})
    user.set_unusable_password()
    user.save()
    return user

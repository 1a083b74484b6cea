"""Create demo users and a correspondence, and print a token for each user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from example.chat.models import Correspondence, Message
from gql_pubsub import create_jwt

DEMO_USERS = ("alice", "bob", "carol")
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = "Create the demo users alice, bob and carol, and print a JWT for each."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--lifetime", type=float, default=24 * 3600, help="token lifetime (s)")

    @transaction.atomic
    def handle(self, *args: Any, lifetime: float, **options: Any) -> None:
        user_model = get_user_model()
        users = []
        for name in DEMO_USERS:
            user, created = user_model.objects.get_or_create(username=name)
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            users.append(user)
        if not Correspondence.objects.filter(title="Welcome").exists():
            welcome = Correspondence.objects.create(title="Welcome")
            welcome.participants.set(users[:2])
            Message.objects.create(correspondence=welcome, author=users[0], body="Hi Bob!")
        self.stdout.write(f"Demo users (password {DEMO_PASSWORD!r}) and their tokens:")
        for user in users:
            self.stdout.write(f"  {user.username}: {create_jwt(user, lifetime=lifetime)}")

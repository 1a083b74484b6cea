"""The README's opening example, as written, is a working project: built from the README's own
code block in a fresh ``django-admin startproject``, run on the package installed from its
wheel in a virtualenv of its own, served by uvicorn, fed from a shell."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from ..gqlws import GraphQLWS
from ..package import BuiltPackage
from ..services import ROOT, live_server, to_thread, wait_until

FILE_MARK = re.compile(r"^# (\w+/\w+\.py)(.*)$", re.M)


def readme_files() -> dict[str, str]:
    """The files of the README's first Python block, by path (``# myapp/models.py`` …)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    marks = list(FILE_MARK.finditer(block))
    assert marks and marks[0].start() == 0, "the block starts with a '# path.py' line"
    return {
        mark.group(1): block[mark.end() : following.start() if following else len(block)]
        for mark, following in zip(marks, [*marks[1:], None], strict=True)
    }


@dataclass(frozen=True)
class Project:
    """The project's folder, and the interpreter of the virtualenv that has the wheel."""

    root: Path
    python: Path


def manage(project: Project, *args: str) -> str:
    """``python manage.py …`` in the project, on the installed wheel, failing with its output."""
    done = subprocess.run(
        [project.python, "manage.py", *args],
        cwd=project.root,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def project_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH"}}
    return {**env, "DJANGO_SETTINGS_MODULE": "myproject.settings"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, built_package: BuiltPackage) -> Project:
    """``startproject myproject`` plus ``myapp``, with the README's files written in."""
    root = tmp_path_factory.mktemp("readme")
    subprocess.run(
        [built_package.python, "-m", "django", "startproject", "myproject", str(root)],
        check=True,
        env=project_env(),
    )
    (root / "myapp" / "migrations").mkdir(parents=True)
    (root / "myapp" / "__init__.py").touch()
    (root / "myapp" / "migrations" / "__init__.py").touch()
    redis_url = os.environ["REDIS_URL"]
    for path, code in readme_files().items():
        target = root / path
        if path == "myproject/settings.py":  # "(additions)"
            code = target.read_text() + code.replace("redis://localhost:6379/0", redis_url)
        target.write_text(code)
    project = Project(root, built_package.python)
    manage(project, "makemigrations", "myapp")
    manage(project, "migrate")
    return project


async def test_the_readmes_opening_example_streams_a_shell_write_to_its_room_only(
    project: Project, log_dir: Path, redis_client: redis.Redis
) -> None:
    """A ``Message.objects.create`` in ``manage.py shell`` reaches ``messageAdded(room:)``."""
    room, other = f"lobby-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    token = manage(
        project,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; from gql_pubsub.auth import create_jwt;"
        f" print(create_jwt(User.objects.create_user('reader-{uuid.uuid4().hex}')))",
    ).split()[-1]
    installed = manage(project, "shell", "-c", "import gql_pubsub; print(gql_pubsub.__file__)")
    assert installed.split()[-1].startswith(str(project.python.parent.parent))
    env = {**project_env(), "PYTHONPATH": ""}
    app = "myproject.asgi:application"
    with live_server(
        env, log_dir=log_dir, app=app, cwd=project.root, python=project.python
    ) as server:
        async with await GraphQLWS.connect(server.ws_url) as client:
            await client.init({"token": token})
            query = "subscription ($r: String!) { messageAdded(room: $r) { room body } }"
            await client.subscribe("1", query, {"r": room})
            await to_thread(
                wait_until,
                lambda: redis_client.pubsub_channels(f"*room:{room}"),
                10,
                f"the server to subscribe to room:{room}",
            )
            await client.send({"id": "2", "type": "subscribe", "payload": {"query": "{ hello }"}})
            assert await client.next_payload("2") == {"data": {"hello": "world"}}
            assert await client.receive() == {"id": "2", "type": "complete"}
            manage(
                project,
                "shell",
                "-c",
                "from myapp.models import Message;"
                f" Message.objects.create(room={other!r}, body='elsewhere');"
                f" Message.objects.create(room={room!r}, body='hi')",
            )
            payload = await client.next_payload("1")
            assert payload["data"] == {"messageAdded": {"room": room, "body": "hi"}}

"""The README's quick start, as written, works: its commands run in an empty directory with the
package installed from its wheel in a virtualenv of its own, its files are written in, its
server is started, and an event arrives in GraphiQL's way (a logged-in admin's session), in its
graphql-ws client (a token from ``gql_pubsub_token``) and, once Redis is added as it says, from
a ``manage.py shell`` write to a server with two workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..gqlws import GraphQLWS
from ..package import BuiltPackage
from ..services import ROOT, LiveServer, live_server, scaled

FILE_MARK = re.compile(r"^# (\w+/\w+\.py)(.*)$", re.M)
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
PASSWORD = "quick-start-password"


@dataclass(frozen=True)
class QuickStart:
    """The README's "Quick start" section, block by block."""

    commands: list[str]  # the shell lines, in order
    files: dict[str, str]  # by path: "myapp/models.py" …
    subscription: str
    mutation: str
    client_js: str
    redis_settings: str


def quick_start() -> QuickStart:
    """Read the quick start's blocks out of the README, failing if its shape changed."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = FENCE.findall(section)
    by_lang: dict[str, list[str]] = {}
    for lang, body in blocks:
        by_lang.setdefault(lang, []).append(body)
    files_block, settings_block = by_lang["python"]
    marks = list(FILE_MARK.finditer(files_block))
    assert marks and marks[0].start() == 0, "the files block starts with a '# path.py' line"
    files = {
        mark.group(1): files_block[mark.end() : following.start() if following else None]
        for mark, following in zip(marks, [*marks[1:], None], strict=True)
    }
    subscription, mutation = (strip_comment(b) for b in by_lang["graphql"])
    commands = [line for block in by_lang["sh"] for line in block.splitlines() if line.strip()]
    (client_js,) = by_lang["js"]
    return QuickStart(commands, files, subscription, mutation, client_js, settings_block)


def strip_comment(graphql: str) -> str:
    return "\n".join(line for line in graphql.splitlines() if not line.startswith("#"))


@dataclass(frozen=True)
class Project:
    """The project's folder, and the interpreter of the virtualenv that has the wheel."""

    root: Path
    python: Path

    @property
    def bin(self) -> Path:
        return self.python.parent

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a user's shell with the virtualenv active: no suite settings."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "REDIS_URL", "DATABASE_URL"}
        }
        return {**env, "VIRTUAL_ENV": str(self.bin.parent), "PYTHONPATH": "", **extra}

    def server_env(self) -> dict[str, str]:
        """For ``live_server``, which adds the suite's environment: asgi.py's own default."""
        return self.env(DJANGO_SETTINGS_MODULE="myproject.settings")

    def run(self, command: str, *, env: dict[str, str] | None = None) -> str:
        """Run one of the README's command lines in the project, as its shell would."""
        argv = shlex.split(command)
        argv[0] = str(self.bin / argv[0]) if (self.bin / argv[0]).exists() else argv[0]
        done = subprocess.run(
            argv,
            cwd=self.root,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=scaled(120),
        )
        assert done.returncode == 0, f"`{command}` failed:\n{done.stdout}{done.stderr}"
        return done.stdout


def server_command(commands: list[str]) -> list[str]:
    """The README's `uvicorn …` line, as argv."""
    (line,) = [c for c in commands if c.startswith("uvicorn ")]
    return shlex.split(line)


@pytest.fixture(scope="module")
def readme() -> QuickStart:
    return quick_start()


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory, built_package: BuiltPackage, readme: QuickStart
) -> Project:
    """The README's commands and files, in an empty directory, up to the server's start."""
    project = Project(tmp_path_factory.mktemp("quickstart"), built_package.python)
    for command in readme.commands:
        if command.startswith("python -m venv"):
            # The virtualenv with the package: the wheel built from this checkout, installed
            assert command.endswith("pip install gql_pubsub"), command
        elif command.startswith("python manage.py createsuperuser"):
            # It asks for the password twice; the variable answers it, as Django documents.
            env = project.env(DJANGO_SUPERUSER_PASSWORD=PASSWORD)
            project.run(f"{command} --noinput", env=env)
        elif command.startswith("uvicorn "):
            break  # the server: each test starts it
        else:
            project.run(command)
        if command.startswith("python manage.py startapp"):
            for path, code in readme.files.items():
                target = project.root / path
                if path.endswith("settings.py"):  # "(additions)"
                    code = target.read_text() + code
                target.write_text(code)
    return project


@pytest.fixture
def quick_start_server(project: Project, readme: QuickStart, log_dir: Path) -> Iterator[LiveServer]:
    """The README's server command (uvicorn), run on a free port."""
    argv = server_command(readme.commands)
    assert argv[1:] == ["myproject.asgi:application"], argv
    with live_server(
        project.server_env(), log_dir=log_dir, app=argv[1], cwd=project.root, python=project.python
    ) as server:
        yield server


@pytest.fixture
async def admin_session(quick_start_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A browser that logged in at /admin/ as the README's superuser."""
    base = quick_start_server.http_url
    async with httpx.AsyncClient(base_url=base, timeout=scaled(20)) as browser:
        login = await browser.get("/admin/login/")
        assert login.status_code == 200
        done = await browser.post(
            "/admin/login/?next=/admin/",
            data={
                "username": "admin",
                "password": PASSWORD,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "next": "/admin/",
            },
            headers={"Referer": f"{base}/admin/login/"},
        )
        assert done.status_code == 302 and "sessionid" in browser.cookies, done.text[:500]
        yield browser


async def send_until_received(send: Any, receive: Any, what: str) -> dict[str, Any]:
    """Send the README's mutation until the subscriber has one (it may not have subscribed
    yet: nothing in the quick start says when), each wait bounded; return what arrived."""
    for _ in range(20):
        await send()
        try:
            result: dict[str, Any] = await asyncio.wait_for(receive(), scaled(1))
            return result
        except TimeoutError:
            continue
    raise AssertionError(f"no event reached {what} after 20 messages")


async def test_the_quick_starts_graphiql_subscription_receives_a_message_sent_in_graphiql(
    readme: QuickStart, quick_start_server: LiveServer, admin_session: httpx.AsyncClient
) -> None:
    """Logged in at /admin/, GraphiQL's socket subscribes; its mutation tab's message arrives."""
    page = await admin_session.get("/graphql/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    cookies = "; ".join(f"{k}={v}" for k, v in admin_session.cookies.items())
    headers = {"Cookie": cookies, "Origin": quick_start_server.http_url}
    async with await GraphQLWS.connect(
        quick_start_server.ws_url, additional_headers=headers
    ) as socket:
        await socket.init()
        await socket.subscribe("1", readme.subscription)

        async def send() -> None:
            answer = await admin_session.post(
                "/graphql/",
                json={"query": readme.mutation},
                headers={
                    "X-CSRFToken": admin_session.cookies["csrftoken"],
                    "Origin": quick_start_server.http_url,
                },
            )
            assert answer.status_code == 200 and "errors" not in answer.json(), answer.text

        payload = await send_until_received(send, lambda: socket.next_payload("1"), "GraphiQL")
        assert payload["data"]["messageAdded"]["room"] == "lobby"
        assert payload["data"]["messageAdded"]["body"] == "Hello!"


async def test_the_quick_starts_graphql_ws_client_receives_a_message_with_a_printed_token(
    readme: QuickStart,
    project: Project,
    quick_start_server: LiveServer,
    tmp_path: Path,
) -> None:
    """``gql_pubsub_token admin`` prints a token; the README's client.mjs streams with it."""
    node, modules = shutil.which("node"), ROOT / "tests" / "node" / "node_modules"
    if node is None or not modules.is_dir():
        pytest.skip("needs Node.js 20+ and `npm ci --prefix tests/node` (CI has both)")
    token = project.run("python manage.py gql_pubsub_token admin").strip()
    assert token.count(".") == 2, token  # a JWT, and nothing else on stdout
    script = tmp_path / "client.mjs"  # the README's, on the test server's port
    script.write_text(readme.client_js.replace(":8000/", f":{quick_start_server.port}/"))
    (tmp_path / "node_modules").symlink_to(modules)
    client = await asyncio.create_subprocess_exec(
        node, str(script), token, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert client.stdout is not None

        async def send() -> None:
            async with httpx.AsyncClient(timeout=scaled(20)) as program:
                answer = await program.post(
                    f"{quick_start_server.http_url}/graphql/",
                    json={"query": readme.mutation},
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert answer.status_code == 200 and "errors" not in answer.json(), answer.text

        async def printed() -> dict[str, Any]:
            assert client.stdout is not None
            line = await client.stdout.readline()
            assert line, (await client.stderr.read()).decode() if client.stderr else "no output"
            result: dict[str, Any] = json.loads(line)
            return result

        result = await send_until_received(send, printed, "the graphql-ws client")
        assert result["data"]["messageAdded"]["body"] == "Hello!"
    finally:
        client.kill()
        await client.wait()


async def test_with_the_readmes_redis_setting_a_shell_write_reaches_a_two_worker_server(
    readme: QuickStart, project: Project, log_dir: Path
) -> None:
    """With BROKER_URL added as the README says, ``Message.objects.create`` in a shell reaches
    a subscriber of a server run with ``--workers``."""
    settings = project.root / "myproject" / "settings.py"
    original = settings.read_text()
    redis_url = os.environ["REDIS_URL"]
    settings.write_text(
        original + readme.redis_settings.replace("redis://localhost:6379/0", redis_url)
    )
    room = f"room-{uuid.uuid4().hex}"
    try:
        token = project.run("python manage.py gql_pubsub_token admin").strip()
        with live_server(
            project.server_env(),
            log_dir=log_dir,
            app="myproject.asgi:application",
            cwd=project.root,
            python=project.python,
            workers=2,
        ) as server:
            async with await GraphQLWS.connect(server.ws_url) as socket:
                await socket.init({"token": token})
                await socket.subscribe("1", readme.subscription.replace('"lobby"', f'"{room}"'))
                write = (
                    "from myapp.models import Message;"
                    f" Message.objects.create(room={room!r}, body='hi')"
                )

                async def send() -> None:
                    await asyncio.to_thread(
                        project.run, f"python manage.py shell -c {shlex.quote(write)}"
                    )

                payload = await send_until_received(
                    send, lambda: socket.next_payload("1"), "the socket"
                )
                assert payload["data"]["messageAdded"] == {
                    "id": payload["data"]["messageAdded"]["id"],
                    "room": room,
                    "body": "hi",
                }
    finally:
        settings.write_text(original)

"""Every code block of the docs and the README runs or is checked here (docs/contributing/docs.md
says which way for each language), and the reference pages made from the code cover it all."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.core.management import get_commands
from django.test import override_settings
from graphql import build_schema, parse, validate

from gql_pubsub.conf import Settings, get_settings

from ..services import ROOT

PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[^\s`]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S
)
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^":]+)(?::[\w-]+)?"$')
PROJECT_FILE = re.compile(r"^# \w+/\w+\.py\b")  # the README's quick start: a project's files
SHOWN_ONLY = {"text", "console", "http", "toml", "ini", "promql", "dockerfile"}
CHECKED = {"python", "graphql", "json", "yaml", "js", "sh"}
# A `# settings.py` block runs after what `django-admin startproject` writes.
STARTPROJECT = {
    "BASE_DIR": Path("/srv/project"),
    "DEBUG": True,
    "SECRET_KEY": "django-insecure-docs",
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    "MIDDLEWARE": [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
}


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language and its text."""

    page: Path
    line: int
    lang: str
    body: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.body.lstrip("\n").split("\n", 1)[0].strip()


def blocks(*langs: str) -> list[Block]:
    """The fenced blocks of every page, in the given languages (all when none is given)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            indent = len(match["indent"])
            body = "".join(line[indent:] for line in match["body"].splitlines(keepends=True))
            block = Block(page, text.count("\n", 0, match.start()) + 1, match["lang"], body)
            if not langs or block.lang in langs:
                found.append(block)
    return found


def ids(found: list[Block]) -> list[str]:
    return [str(block) for block in found]


def dev_commands() -> set[str]:
    """The commands of scripts/dev.py, read from its ``main()``."""
    tree = ast.parse((ROOT / "scripts" / "dev.py").read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    table = next(n.value for n in ast.walk(main) if isinstance(n, ast.Assign))
    assert isinstance(table, ast.Dict)
    return {k.value for k in table.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def docs_hooks() -> ModuleType:
    """scripts/docs_hooks.py, the code that makes the generated reference pages."""
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_code_block_of_the_docs_names_a_language_that_is_run_checked_or_shown() -> None:
    """An untagged fence, or a language no test looks at, is a docs example nobody checks."""
    unknown = [f"{b} ```{b.lang}" for b in blocks() if b.lang not in CHECKED | SHOWN_ONLY]
    assert not unknown, f"use one of {sorted(CHECKED | SHOWN_ONLY)}: {unknown}"


@pytest.mark.parametrize("block", blocks("python"), ids=ids(blocks("python")))
def test_a_python_block_of_the_docs_runs(block: Block) -> None:
    """Each Python block runs on its own (settings fragments on startproject's settings)."""
    source = block.body
    lines = [line for line in source.strip().splitlines() if line.strip()]
    if lines and all(SNIPPET.match(line) for line in lines):
        for line in lines:  # the included file is the suite's own code; the build checks it
            match = SNIPPET.match(line)
            assert match and (ROOT / match["path"]).is_file(), f"{block}: {line} names no file"
        return
    if PROJECT_FILE.match(block.first_line):
        assert block.page.name == "README.md", f"{block}: a project's files belong in example/"
        return  # test_readme_example builds the project from it and runs it
    code = compile(source, str(block), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if block.first_line.startswith("# not run:"):
        return  # compiled: it needs what the suite does not install, as the line says
    if block.first_line == "# settings.py":
        namespace: dict[str, Any] = {
            k: list(v) if isinstance(v, list) else v for k, v in STARTPROJECT.items()
        }
        exec(code, namespace)
        if "GQL_PUBSUB" in namespace:
            with override_settings(GQL_PUBSUB=namespace["GQL_PUBSUB"]):
                get_settings()  # unknown keys and wrong types raise ImproperlyConfigured
        return
    # A module of its own, as a file would be (Strawberry looks a type's module up).
    module = ModuleType(f"docs_block_{block.page.stem}_{block.line}".replace("-", "_"))
    sys.modules[module.__name__] = module
    try:
        result = eval(code, module.__dict__)
        if asyncio.iscoroutine(result):
            asyncio.run(until_done_then_stop_the_broker(result))
    finally:
        del sys.modules[module.__name__]


async def until_done_then_stop_the_broker(block: Coroutine[Any, Any, Any]) -> None:
    """Run an async block; then close the broker it may have started in this event loop, as
    its process would at exit (the loop ends here, its connections must not outlive it)."""
    from gql_pubsub import get_broker

    try:
        await block
    finally:
        await get_broker().stop()
        await get_broker().backend.disconnect()


@pytest.fixture(scope="module")
def example_schema() -> Any:
    return build_schema((ROOT / "schema" / "schema.graphql").read_text())


@pytest.mark.parametrize("block", blocks("graphql"), ids=ids(blocks("graphql")))
def test_a_graphql_block_of_the_docs_is_valid_against_the_examples_schema(
    block: Block, example_schema: Any
) -> None:
    """A GraphQL example parses, and validates against the example's SDL unless it says not."""
    document = parse(block.body)
    if block.first_line.startswith("# schema: none"):
        return
    errors = validate(example_schema, document)
    assert not errors, f"{block}: {[e.message for e in errors]}"


@pytest.mark.parametrize("block", blocks("json", "yaml"), ids=ids(blocks("json", "yaml")))
def test_a_json_or_yaml_block_of_the_docs_parses(block: Block) -> None:
    if block.lang == "json":
        json.loads(block.body)
        return
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the docs tools (the dev extra)")
    list(yaml.safe_load_all(block.body))


@pytest.mark.parametrize("block", blocks("js"), ids=ids(blocks("js")))
def test_a_javascript_block_of_the_docs_is_valid_syntax(block: Block, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js 20+ (node --check); CI has it")
    script = tmp_path / "block.mjs"
    script.write_text(block.body)
    done = subprocess.run([node, "--check", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{block}: {done.stderr}"


MANAGE = re.compile(r"(?:python3? manage\.py|python3? -m django|django-admin) ([\w-]+)")
DEV = re.compile(r"python3? scripts/dev\.py ([\w-]+)")


@pytest.mark.parametrize("block", blocks("sh"), ids=ids(blocks("sh")))
def test_a_shell_block_of_the_docs_names_only_commands_that_exist(block: Block) -> None:
    """``manage.py X`` is a command of Django, gql_pubsub or the example; dev.py's too."""
    commands, dev = set(get_commands()) | {"startproject"}, dev_commands()
    for name in MANAGE.findall(block.body):
        assert name in commands, f"{block}: manage.py has no command {name!r}"
    for name in DEV.findall(block.body):
        assert name in dev, f"{block}: scripts/dev.py has no command {name!r}"


def test_every_setting_is_described_in_the_settings_reference() -> None:
    """The reference is made from conf.py: each key has a description there, and a heading."""
    hooks = docs_hooks()
    described = {key: doc for key, _, _, doc in hooks.settings_fields()}
    assert set(described) == {field.name for field in dataclasses.fields(Settings)}
    assert not [key for key, doc in described.items() if not doc], "a key has no docstring"
    page = hooks.on_page_markdown((ROOT / "docs/reference/settings.md").read_text())
    assert all(f"\n### {key}\n" in page for key in described)


def test_the_errors_reference_names_every_close_code_the_server_sends() -> None:
    """Each close code the package closes a connection with is in the table, with a meaning."""
    hooks = docs_hooks()
    sent = hooks.close_reasons()
    documented = {name: doc for name, _, doc in hooks.close_codes()}
    assert sent and set(sent) <= set(documented)
    assert all(documented[name] for name in sent), "a close code the server sends has no docstring"
    page = hooks.on_page_markdown((ROOT / "docs/reference/errors.md").read_text())
    assert "Token expired: reconnect with a fresh token" in page
    assert "<!-- generated" not in page


def test_the_shell_block_check_catches_a_command_that_does_not_exist() -> None:
    """The checks above can fail: a made-up command is caught, a real one is not."""
    assert MANAGE.findall("python manage.py gql_pubsub_relay\npython manage.py nosuch") == [
        "gql_pubsub_relay",
        "nosuch",
    ]
    assert "nosuch" not in get_commands() and "gql_pubsub_relay" in get_commands()
    assert "test" in dev_commands() and "nosuch" not in dev_commands()


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: every page in the nav, no broken link or anchor."""
    pytest.importorskip("mkdocs", reason="the docs tools come with the dev extra")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]

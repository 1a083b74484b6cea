"""The package's shape: folders that are layers, each importing only downward, no import cycle
(imports inside functions counted), no module over 300 lines. Read from the source, so that a
lazy import that hides from a top-level import graph is found too."""

from __future__ import annotations

import ast
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..services import ROOT

PACKAGE = ROOT / "gql_pubsub"

LAYERS = [
    "conf",
    "core",
    "broker",
    "presence",
    "publishing",
    "auth",
    "streams",
    "execution",
    "server",
    "transports",
]
"""From the bottom up. Every other top-level module (asgi, apps, checks, models, schema,
testing, …) is the composition above them all."""

MAX_LINES = 300


def modules() -> dict[str, Path]:
    """Every module of the package (migrations aside), by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """The package modules ``name`` imports, each with whether only type checking sees it."""
    tree = ast.parse(path.read_text())
    checking: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checking.update(id(inner) for inner in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target not in (name, "gql_pubsub"):
                yield target, id(node) in checking


def layer(name: str) -> int:
    """A module's layer: its folder's place in ``LAYERS``; the top for the rest."""
    head = name.split(".")[1] if "." in name else ""
    return LAYERS.index(head) if head in LAYERS else len(LAYERS)


def graph(*, type_checking: bool) -> dict[str, set[str]]:
    known = modules()
    return {
        name: {
            t for t, only_typing in imports(name, path, known) if type_checking or not only_typing
        }
        for name, path in known.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_folder_imports_only_the_layers_below_it() -> None:
    """No import, lazy or for type checking only, reaches from a layer up to a higher one."""
    upward = [
        f"{name} -> {target}"
        for name, targets in graph(type_checking=True).items()
        for target in sorted(targets)
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_no_module_imports_itself_back_at_run_time() -> None:
    """No cycle of run-time imports, counting those made inside functions."""
    assert cycles(graph(type_checking=False)) == []


def test_no_two_folders_import_each_other_even_for_type_checking() -> None:
    """Between folders the imports are a tree's, type-checking imports included."""
    known = modules()

    def folder(name: str) -> str:
        return name if known[name].name == "__init__.py" else name.rpartition(".")[0]

    folders: dict[str, set[str]] = {}
    for name, targets in graph(type_checking=True).items():
        mine = folder(name)
        for target in targets:
            theirs = folder(target)
            if (
                mine != theirs
                and not theirs.startswith(mine + ".")
                and not mine.startswith(theirs + ".")
            ):
                folders.setdefault(mine, set()).add(theirs)
    assert cycles(folders) == []


def test_no_module_is_longer_than_300_lines() -> None:
    """Each module owns one thing; past 300 lines it owns two."""
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_layers_are_the_folders_and_the_top_level_holds_no_stray_module() -> None:
    """The package's top level is the public API, Django's app modules and the composition."""
    top = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem not in ("__init__",))
    assert top == [
        "admin",
        "apps",
        "asgi",
        "checks",
        "conf",
        "models",
        "moved",
        "schema",
    ]
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(
        [*LAYERS[1:], "management", "migrations", "testing"]
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("gql_pubsub.relay", "gql_pubsub.publishing.outbox.forwarder"),
        ("gql_pubsub.websocket", "gql_pubsub.transports.websocket.endpoint"),
        ("gql_pubsub.backends.redis", "gql_pubsub.broker.backends.redis"),
        ("gql_pubsub.policies", "gql_pubsub.auth.policies"),
    ],
)
def test_an_old_module_path_still_imports_and_says_where_it_moved(old: str, new: str) -> None:
    """``from gql_pubsub.relay import pending`` works, with a DeprecationWarning naming the new
    path; the names are the new module's own objects."""
    import importlib
    import sys

    sys.modules.pop(old, None)
    parent = old.rpartition(".")[0]
    with warnings.catch_warnings():  # a moved parent warns on its own
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module(parent)
    with pytest.warns(DeprecationWarning, match=rf"^{old} moved to {new}: import from there"):
        module = importlib.import_module(old)
    moved_to = importlib.import_module(new)
    name = next(n for n in dir(moved_to) if not n.startswith("_"))
    assert getattr(module, name) is getattr(moved_to, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.import_module(old)  # once per process: already imported, no second warning


def test_no_old_path_is_also_a_module_of_the_package_today() -> None:
    """An old path that names a folder now would shadow the folder: it is not in the table."""
    from gql_pubsub.moved import MOVED

    assert sorted(set(MOVED) & set(modules())) == []

"""MkDocs hooks: reference pages generated from the code, so that they cannot drift from it.

A page asks for a generated part with a comment line of its own, e.g. ``<!-- generated: settings
-->``; the parts are read from the source with ``ast`` (nothing is imported, so the site builds
without Django settings). tests/product/test_docs.py checks the same functions.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gql_pubsub"
MARK = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def settings_fields() -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, docstring) of each field of ``conf.Settings``, in source order."""
    tree = _tree(PACKAGE / "conf.py")
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    body = cls.body
    for node, following in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        doc = ""
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            doc = " ".join(str(following.value.value).split())
        default = ast.unparse(node.value) if node.value is not None else ""
        yield node.target.id, ast.unparse(node.annotation), default, doc


def settings_reference() -> str:
    """One section per ``GQL_PUBSUB`` key: its type, default and meaning."""
    parts = []
    for key, annotation, default, doc in sorted(settings_fields()):
        parts.append(
            f"### {key}\n\n{doc or '(undocumented)'}\n\n"
            f"Type: `{annotation}`. Default: `{default}`.\n"
        )
    return "\n".join(parts)


def _module_strings(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = "…"`` (or f-string) assignments."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and isinstance(
                node.value, ast.Constant | ast.JoinedStr
            ):
                found[target.id] = node.value
    return found


def _text(node: ast.expr, names: dict[str, ast.expr]) -> str | None:
    """The message an expression makes, with ``{…}`` where it is filled in at run time."""
    if isinstance(node, ast.Name) and node.id in names:
        node = names[node.id]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(v.value) if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
            for v in node.values
            if isinstance(v, ast.Constant | ast.FormattedValue)
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, names), _text(node.right, names)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        return _text(node.args[0], names)  # too_many(…) and the like: the message it is given
    return None


def _sources() -> Iterator[tuple[str, ast.AST, dict[str, ast.expr]]]:
    """Each function of the package (and each module's top level), with the strings its names
    can stand for: module-level ones of any module, and the function's own."""
    strings: dict[str, ast.expr] = {}
    trees = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = _tree(path)
        strings.update(_module_strings(tree))
        trees.append((path.relative_to(ROOT).as_posix(), tree))
    for name, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield name, node, strings


def _names_at(function: ast.AST, strings: dict[str, ast.expr], line: int) -> dict[str, ast.expr]:
    """The strings names stand for at ``line`` of ``function``: its last assignments before."""
    local = sorted(
        (node.lineno, node.targets[0].id, node.value)
        for node in ast.walk(function)
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant | ast.JoinedStr)
        and node.lineno < line
    )
    return {**strings, **{name: value for _, name, value in local}}


def close_codes() -> list[tuple[str, int, str]]:
    """(name, number, docstring) of each member of ``CloseCode``."""
    tree = _tree(PACKAGE / "server" / "close_codes.py")
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CloseCode")
    members = []
    for node, following in zip(cls.body, [*cls.body[1:], None], strict=True):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            target = node.targets[0]
            assert isinstance(target, ast.Name)
            doc = ""
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                doc = " ".join(str(following.value.value).split())
            members.append((target.id, int(node.value.value), doc))
    return members


def close_reasons() -> dict[str, set[tuple[str, str]]]:
    """By close code name: the (reason, module) pairs the server closes with."""
    found: dict[str, set[tuple[str, str]]] = {}
    for module, tree, strings in _sources():
        for call in ast.walk(tree):
            if isinstance(call, ast.Dict):  # an ASGI {"type": "websocket.close", "code": …}
                fields = {
                    k.value: v
                    for k, v in zip(call.keys, call.values, strict=True)
                    if isinstance(k, ast.Constant)
                }
                code = fields.get("code")
                if isinstance(code, ast.Attribute) and isinstance(code.value, ast.Name):
                    names = _names_at(tree, strings, call.lineno)
                    reason = _text(fields["reason"], names) if "reason" in fields else None
                    found.setdefault(code.attr, set()).add((reason or "(no reason)", module))
                continue
            if not isinstance(call, ast.Call):
                continue
            args = call.args
            for index, arg in enumerate(args):
                if (
                    isinstance(arg, ast.Attribute)
                    and isinstance(arg.value, ast.Name)
                    and arg.value.id == "CloseCode"
                ):
                    names = _names_at(tree, strings, call.lineno)
                    reason = _text(args[index + 1], names) if index + 1 < len(args) else None
                    found.setdefault(arg.attr, set()).add(
                        (reason or "(a reason made at run time)", module)
                    )
    return found


def errors_reference() -> str:
    """A table of the close codes, each with the reasons the server gives with it."""
    reasons = close_reasons()
    rows = ["| code | name | when | reasons sent (where) |", "|---|---|---|---|"]
    for name, number, doc in sorted(close_codes(), key=lambda m: m[1]):
        sent = "<br>".join(
            f"`{reason}` ({module})" for reason, module in sorted(reasons.get(name, ()))
        )
        rows.append(f"| {number} | `{name}` | {doc} | {sent or 'not sent by the server'} |")
    return "\n".join(rows) + "\n"


def graphql_errors() -> list[tuple[str, str]]:
    """(message, module) of every ``GraphQLError`` the package raises itself."""
    found = set()
    for module, tree, strings in _sources():
        for call in ast.walk(tree):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Name)
                and call.func.id == "GraphQLError"
                and call.args
            ):
                found.add((_text(call.args[0], strings) or "(made at run time)", module))
    return sorted(found)


def graphql_errors_reference() -> str:
    """A list of the GraphQL errors the package raises, as written in the source."""
    return "".join(f"- `{message}` ({module})\n" for message, module in graphql_errors())


def system_checks() -> list[tuple[str, str, str]]:
    """(id, level, message) of every Django system check the package defines."""
    found = []
    for _module, tree, strings in _sources():
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute | ast.Name)):
                continue
            level = call.func.attr if isinstance(call.func, ast.Attribute) else call.func.id
            ids = [k.value for k in call.keywords if k.arg == "id"]
            if level in {"Error", "Warning", "Critical", "Info"} and ids and call.args:
                check_id = ids[0]
                if isinstance(check_id, ast.Constant):
                    message = _text(call.args[0], strings) or "(made at run time)"
                    found.append((str(check_id.value), level, message))
    return sorted(set(found))


def checks_reference() -> str:
    """A table of the system checks: id, level, message."""
    rows = ["| id | level | message |", "|---|---|---|"]
    for check_id, level, message in system_checks():
        rows.append(f"| `{check_id}` | {level} | {' '.join(message.split())} |")
    return "\n".join(rows) + "\n"


def readme_quick_start() -> str:
    """The README's "Install" and "Quick start" sections (one text for both: the suite runs it),
    with their links made relative to docs/."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Install\n")
    end = readme.index("\n## ", readme.index("\n## Quick start\n") + 1)
    return readme[start:end].replace("](docs/", "](")


GENERATED: dict[str, Callable[[], str]] = {
    "quick-start": readme_quick_start,
    "settings": settings_reference,
    "close-codes": errors_reference,
    "graphql-errors": graphql_errors_reference,
    "checks": checks_reference,
}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace each ``<!-- generated: NAME -->`` line with that part, made from the source."""

    def part(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATED:
            raise ValueError(f"no generated part {name!r}; the known ones: {sorted(GENERATED)}")
        return GENERATED[name]()

    return MARK.sub(part, markdown)

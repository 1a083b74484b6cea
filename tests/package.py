"""The package as a user gets it: the sdist and wheel built from the checkout, and the wheel
installed (not editable) in a virtualenv of its own."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .services import ROOT


@dataclass(frozen=True)
class BuiltPackage:
    """The built artifacts, and the interpreter of a fresh virtualenv that has the wheel."""

    sdist: Path
    wheel: Path
    python: Path


def uv(*args: str | Path, cwd: Path = ROOT) -> str:
    """Run the uv of the test environment, failing with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "uv", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"uv {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"
    return done.stdout


def build_and_install(directory: Path) -> BuiltPackage:
    """Build the sdist and wheel into ``directory`` and install the wheel in a new virtualenv.

    The virtualenv gets the versions of this test environment (the lock's, or the range pass's
    newest or lowest), so it differs from it only in how gql_pubsub is installed."""
    dist = directory / "dist"
    uv("build", "--quiet", "--sdist", "--wheel", "--out-dir", dist)
    (sdist,) = dist.glob("gql_pubsub-*.tar.gz")
    (wheel,) = dist.glob("gql_pubsub-*.whl")
    constraints = directory / "constraints.txt"
    constraints.write_text(uv("pip", "freeze", "--exclude-editable", "--python", sys.executable))
    env = directory / "venv"
    uv("venv", "--quiet", "--python", sys.executable, env)
    python = env / "bin" / "python"
    uv("pip", "install", "--quiet", "--python", python, "-c", constraints, wheel)
    return BuiltPackage(sdist=sdist, wheel=wheel, python=python)

"""The package that `pip install gql_pubsub` gets: built, checked, installed from the wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile

from ..package import BuiltPackage
from ..services import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_sdist_and_wheel_pass_twine_check_strict(built_package: BuiltPackage) -> None:
    """``twine check --strict``: the metadata and the README render on a package index."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            built_package.sdist,
            built_package.wheel,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_wheel_carries_the_license_types_static_files_and_migrations(
    built_package: BuiltPackage,
) -> None:
    """The MIT notice travels with the code; so do py.typed, GraphiQL and the migrations."""
    names = zipfile.ZipFile(built_package.wheel).namelist()
    assert any(re.fullmatch(r"gql_pubsub-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)
    assert "gql_pubsub/py.typed" in names
    assert "gql_pubsub/migrations/0001_initial.py" in names
    assert any(n.startswith("gql_pubsub/static/gql_pubsub/graphiql/") for n in names)
    assert not any(n.startswith(("tests/", "example/", "benchmarks/")) for n in names)


def test_the_wheels_metadata_names_the_license_and_exactly_the_tested_versions(
    built_package: BuiltPackage,
) -> None:
    """License-Expression and License-File, and classifiers for Django 5.2 and 6.1 only."""
    wheel = zipfile.ZipFile(built_package.wheel)
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "License-Expression: MIT" in text
    assert "License-File: LICENSE" in text
    assert re.findall(r"^Classifier: Framework :: Django :: (.+)$", text, re.M) == ["5.2", "6.1"]
    assert "Classifier: Typing :: Typed" in text
    assert re.findall(r"^Classifier: Programming Language :: Python :: (3\.\d+)$", text, re.M) == [
        "3.11",
        "3.13",
    ]


def test_the_sdist_has_license_changelog_and_docs_and_no_tests_it_could_not_run(
    built_package: BuiltPackage,
) -> None:
    """No half test tree: the suite needs the repository's example, Node clients and services."""
    with tarfile.open(built_package.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "docs/ARCHITECTURE.md"} <= names
    assert not [name for name in names if name.startswith("tests")]


def test_the_installed_wheel_is_imported_from_its_virtualenv_with_pyprojects_version(
    built_package: BuiltPackage,
) -> None:
    """Not the checkout: the module's file is in the virtualenv; ``__version__`` is pyproject's."""
    done = subprocess.run(
        [
            built_package.python,
            "-c",
            "import gql_pubsub; print(gql_pubsub.__file__); print(gql_pubsub.__version__)",
        ],
        capture_output=True,
        text=True,
        cwd=built_package.python.parent,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    path, version = done.stdout.split()
    assert path.startswith(str(built_package.python.parent.parent)) and "site-packages" in path
    assert version == PYPROJECT["version"]


def test_the_changelog_opens_with_the_version_of_pyproject() -> None:
    """A release's version and its changelog entry cannot drift apart."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.findall(r"^## (\S+)", changelog, re.M)[0] == PYPROJECT["version"]


def test_the_readme_has_no_relative_links_that_break_on_a_package_index() -> None:
    """The README is the package's page on the index: every link there must be absolute."""
    readme = (ROOT / "README.md").read_text()
    relative = re.findall(r"\]\((?!https?://|#|mailto:)([^)]+)\)", readme)
    assert relative == []

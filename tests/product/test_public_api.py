"""The one import place: every public name is importable from ``gql_pubsub``, and importing the
package itself needs neither Django's settings nor its apps (models load on first use)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import gql_pubsub


def test_every_public_name_is_the_object_of_its_own_module() -> None:
    lazy = gql_pubsub._LAZY
    for name in gql_pubsub.__all__:
        value = getattr(gql_pubsub, name)
        if name in lazy:
            home = importlib.import_module(f"gql_pubsub.{lazy[name]}")
            assert value is getattr(home, name), name
    assert set(lazy) <= set(gql_pubsub.__all__)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match=r"^module 'gql_pubsub' has no attribute 'nope'$"):
        gql_pubsub.nope  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_package_needs_no_settings_and_loads_no_models() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = (
        "import sys, gql_pubsub; "
        "print(sorted(m for m in ('gql_pubsub.models', 'gql_pubsub.transports.http.view',"
        " 'django.db.models') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

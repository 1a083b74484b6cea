"""Loaded by every Python process of a mutation run (scripts/mutation.py puts it on PYTHONPATH).

While mutmut collects which tests reach which functions (MUTANT_UNDER_TEST=stats), the servers
and writers the suite starts run library code in processes of their own, where mutmut cannot see
it. Here each such process appends the names of the functions it runs to a shared file, afresh
for each test (the suite touches ``<file>.test`` when a test starts); the suite's conftest reads
them back and credits the test. In every other run this does nothing.
"""

from __future__ import annotations

import os

_HITS = os.environ.get("GQL_PUBSUB_MUTATION_HITS")

if _HITS and os.environ.get("MUTANT_UNDER_TEST") == "stats":
    from mutmut.state import state

    class _Recorder(set[str]):
        """mutmut's per-process set of functions hit, also written to the shared file."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path
            self.test = 0
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

        def add(self, name: str) -> None:
            try:
                test = os.stat(self.path + ".test").st_mtime_ns
            except FileNotFoundError:
                test = 0
            if test != self.test:
                self.clear()
                self.test = test
            if name not in self:
                super().add(name)
                os.write(self.fd, name.encode() + b"\n")

    state()._stats = _Recorder(_HITS)

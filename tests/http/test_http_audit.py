"""graphql-http's GraphQL-over-HTTP audit (the npm package's ``serverAudits``, run by Node)
against the example's ``/graphql/`` on a real server: every MUST and every SHOULD passes."""

from __future__ import annotations

import json
import subprocess

from ..conftest import NODE_DIR
from ..services import LiveServer, scaled


def test_every_must_and_should_of_the_graphql_over_http_audit_passes(
    node: str, server: LiveServer
) -> None:
    done = subprocess.run(
        [node, "http_audit.mjs", f"{server.http_url}/graphql/"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    by_level = {
        level: [r for r in results if r["name"].startswith(level)]
        for level in ("MUST", "SHOULD", "MAY")
    }
    assert len(by_level["MUST"]) >= 13 and len(by_level["SHOULD"]) >= 23  # the audit ran whole
    failed = [r for r in results if r["status"] != "ok" and not r["name"].startswith("MAY")]
    assert failed == []

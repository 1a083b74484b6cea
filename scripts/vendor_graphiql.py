#!/usr/bin/env python3
"""Vendor GraphiQL's browser assets into the package, so its page needs no CDN.

    python scripts/vendor_graphiql.py

Downloads each pinned npm package from the npm registry, checks each file against the
subresource-integrity hash pinned here (the same files and hashes as Strawberry's GraphiQL
page), and writes the file and the package's licence to
``gql_pubsub/static/gql_pubsub/graphiql/<package>@<version>/``. Run it to change a version;
the page's template names the same paths and hashes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "gql_pubsub" / "static" / "gql_pubsub" / "graphiql"

ASSETS = [  # (package, version, file, its sha384 as the page's integrity attribute has it)
    ("react", "18.2.0", "umd/react.production.min.js",
     "tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8"),
    ("react-dom", "18.2.0", "umd/react-dom.production.min.js",
     "bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh"),
    ("js-cookie", "3.0.5", "dist/js.cookie.min.js",
     "/vxhYfM1LENRhdpZ8dwEsQn/X4VhpbEZSiU4m/FwR+PVpzar4fkEOw8FP9Y+OfQN"),
    ("graphiql", "3.8.3", "graphiql.min.css",
     "Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM"),
    ("graphiql", "3.8.3", "graphiql.min.js",
     "HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie"),
    ("@graphiql/plugin-explorer", "1.0.2", "dist/style.css",
     "5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi"),
    ("@graphiql/plugin-explorer", "1.0.2", "dist/index.umd.js",
     "2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9"),
]  # fmt: skip
LICENCES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "license")
LICENCE_OF_MONOREPO = {"@graphiql/plugin-explorer": "graphiql@3.8.3"}
"""Packages that ship no licence file: their package.json says MIT, and the licence is that of
their monorepo (github.com/graphql/graphiql), as shipped by its graphiql package."""


def sri(data: bytes) -> str:
    return base64.b64encode(hashlib.sha384(data).digest()).decode()


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
        return data


def main() -> None:
    packages: dict[tuple[str, str], dict[str, str]] = {}
    for package, version, path, expected in ASSETS:
        packages.setdefault((package, version), {})[path] = expected
    for (package, version), files in packages.items():
        meta = json.loads(fetch(f"https://registry.npmjs.org/{package}/{version}"))
        tarball = fetch(meta["dist"]["tarball"])
        assert hashlib.sha1(tarball).hexdigest() == meta["dist"]["shasum"], package
        folder = TARGET / f"{package.replace('/', '__')}@{version}"
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
            members = {m.name.removeprefix("package/"): m for m in archive.getmembers()}
            for path, expected in files.items():
                extracted = archive.extractfile(members[path])
                assert extracted is not None, path
                data = extracted.read()
                if sri(data) != expected:
                    raise SystemExit(
                        f"{package}@{version}/{path}: sha384 {sri(data)}, not {expected}"
                    )
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                (folder / path).write_bytes(data)
            write_licence(package, version, meta, members, archive, folder)
        print(f"{package}@{version}: {len(files)} file(s), licence")


def write_licence(
    package: str,
    version: str,
    meta: dict[str, str],
    members: dict[str, tarfile.TarInfo],
    archive: tarfile.TarFile,
    folder: Path,
) -> None:
    licence = next((members[n] for n in LICENCES if n in members), None)
    if licence is not None:
        extracted = archive.extractfile(licence)
        assert extracted is not None
        (folder / "LICENSE").write_bytes(extracted.read())
    elif package in LICENCE_OF_MONOREPO:
        source = TARGET / LICENCE_OF_MONOREPO[package] / "LICENSE"
        note = f"{package} ships no licence file; package.json: {meta['license']}.\n"
        note += f"Its monorepo's licence, as {LICENCE_OF_MONOREPO[package]} ships it:\n\n"
        (folder / "LICENSE").write_text(note + source.read_text())
    else:
        raise SystemExit(f"{package}@{version} has no licence file")


if __name__ == "__main__":
    main()

"""The GraphiQL page, with every asset served from the package: no CDN, no inline script.

The assets are the exact files of Strawberry's GraphiQL page (pinned versions), vendored by
``scripts/vendor_graphiql.py`` with their licences and checked by subresource integrity.
"""

from __future__ import annotations

import html

from django.templatetags.static import static

ASSETS = "gql_pubsub/graphiql/"

STYLES = [
    ("graphiql@3.8.3/graphiql.min.css",
     "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM"),
    ("@graphiql__plugin-explorer@1.0.2/dist/style.css",
     "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi"),
    ("page.css", None),
]  # fmt: skip
"""The page's style sheets, in order, with their integrity (None: the page's own)."""

SCRIPTS = [
    ("react@18.2.0/umd/react.production.min.js",
     "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8"),
    ("react-dom@18.2.0/umd/react-dom.production.min.js",
     "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh"),
    ("js-cookie@3.0.5/dist/js.cookie.min.js",
     "sha384-/vxhYfM1LENRhdpZ8dwEsQn/X4VhpbEZSiU4m/FwR+PVpzar4fkEOw8FP9Y+OfQN"),
    ("graphiql@3.8.3/graphiql.min.js",
     "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie"),
    ("@graphiql__plugin-explorer@1.0.2/dist/index.umd.js",
     "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9"),
    ("page.js", None),
]  # fmt: skip
"""The page's scripts, in order, with their integrity (None: the page's own)."""


def _integrity(value: str | None) -> str:
    return f' integrity="{value}"' if value else ""


def graphiql_page() -> str:
    """The GraphiQL page's HTML, its assets at ``STATIC_URL`` (so ``collectstatic`` serves them)."""
    links = "\n".join(
        f'    <link rel="stylesheet" href="{html.escape(static(ASSETS + path))}"'
        f"{_integrity(integrity)} />"
        for path, integrity in STYLES
    )
    scripts = "\n".join(
        f'    <script src="{html.escape(static(ASSETS + path))}"{_integrity(integrity)}></script>'
        for path, integrity in SCRIPTS
    )
    return f"""<!doctype html>
<html>
  <head>
    <meta charset="utf-8" />
    <title>GraphiQL</title>
{links}
  </head>
  <body>
    <div id="graphiql" class="graphiql-container">Loading...</div>
{scripts}
  </body>
</html>
"""

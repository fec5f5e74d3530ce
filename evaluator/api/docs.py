"""/docs: Swagger UI over /openapi.json, its assets served by this API (no CDN: works offline)."""

from __future__ import annotations

import functools
import html

import falcon

import evaluator
from evaluator.api.openapi import operations
from evaluator.api.operations import ANYONE, HTML, Media, operation
from evaluator.errors import NotFound

# The files the page loads, from the swagger-ui-bundle-v2 wheel (Swagger UI, Apache-2.0).
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "application/javascript",
          "favicon-32x32.png": "image/png", "favicon-16x16.png": "image/png"}
ASSET_MEDIA = Media(tuple(dict.fromkeys([*ASSETS.values(), "application/javascript"])), {"type": "string"})
INIT_JS = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, tryItOutEnabled: false,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
});
"""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>evaluator API {version}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head><body>
<noscript><p>This page needs JavaScript; the machine-readable contract is <a href="/openapi.json">/openapi.json</a>.
Errors are <code>{{"error": {{"code", "message"}}}}</code>.</p><table>{rows}</table></noscript>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""


@functools.lru_cache(maxsize=len(ASSETS))
def _asset(name: str) -> bytes:
    import swagger_ui_bundle  # NOTE: its path comes from importlib.resources: works from a wheel too

    return (swagger_ui_bundle.swagger_ui_path / name).read_bytes()


class Docs:
    auth = "none"

    def __init__(self, app: falcon.App) -> None:
        self._app = app

    @functools.cached_property
    def _page(self) -> str:
        rows = "".join(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                       f"<td>{html.escape(op.summary)}</td></tr>" for path, method, op in sorted(operations(self._app)))
        return PAGE.format(version=evaluator.__version__, rows=rows)

    @operation("getDocs", "Interactive API documentation (Swagger UI)", tag="meta", access=ANYONE,
               responses={200: HTML})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/html; charset=utf-8"
        resp.text = self._page

    @operation("getDocsAsset", "A script, style sheet or icon of the documentation page", tag="meta",
               access=ANYONE, responses={200: ASSET_MEDIA}, errors=(404,))
    def on_get_asset(self, req: falcon.Request, resp: falcon.Response, asset: str) -> None:
        if asset == "init.js":
            resp.content_type, resp.text = "application/javascript", INIT_JS
        elif asset in ASSETS:  # NOTE: only these names: a path never reaches the file system
            resp.content_type, resp.data = ASSETS[asset], _asset(asset)
        else:
            raise NotFound(f"no documentation asset {asset[:100]!r}")
        resp.cache_control = ["public", "max-age=86400"]

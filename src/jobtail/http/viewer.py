"""The web viewer's page and files: `/`, the page's own paths under `/p/…`, and `/assets/…`.

The viewer is a single page built from `web/` into `jobtail/viewer_static/` (`npm ci && npm run
build` there; `scripts/serve` and `scripts/test` do it when the bundle is missing or its sources
changed). Every path of the page answers the same `index.html`; the script routes in the browser.
Without a bundle, the page says how to build one and the API works as ever.

Security: every answer carries a Content-Security-Policy that allows only this origin's script,
styles and connections (no inline script or style, no framing, no plugins), `X-Frame-Options:
DENY`, `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`. The page keeps its
token in the tab's sessionStorage and sends it as `X-Auth-Token`: no cookie carries credentials,
so another site cannot make the browser act on the user's behalf (no CSRF), and the CSP keeps
foreign script from reading it. Log text is put into the page as text, never as markup.
"""

from __future__ import annotations

import re
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

from jobtail.http.errors import error_response

STATIC_DIR = Path(__file__).resolve().parent.parent / "viewer_static"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ASSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>jobtail</title>
<h1>The jobtail viewer is not built</h1>
<p>The API works as ever. To build the page: <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>
(<code>./scripts/serve</code> does this itself), then reload.</p>
"""


def _file(path: Path, request: Request, cache: str) -> Response:
    stat = path.stat()
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(path, headers=headers, stat_result=stat)


async def page(request: Request) -> Response:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503, headers=SECURITY_HEADERS)
    return _file(index, request, "no-cache")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    path = STATIC_DIR / name
    if not _ASSET.fullmatch(name) or not path.is_file():
        response = error_response(request, 404, "APIGW.0101",
                                  "The API does not exist or has not been published in the environment.")
        response.headers.update(SECURITY_HEADERS)
        return response
    return _file(path, request, "no-cache")


ROUTES = [
    Route("/", page, methods=["GET", "HEAD"]),
    Route("/p/{rest:path}", page, methods=["GET", "HEAD"]),
    Route("/assets/{name}", asset, methods=["GET", "HEAD"]),
]

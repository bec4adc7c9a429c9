"""The viewer's page and files: one page for every viewer path, strict security headers, and a
page that says how to build the viewer when it is not built."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from support.live import LiveServer

from jobtail.http import viewer

HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    static = tmp_path / "viewer_static"
    static.mkdir()
    (static / "index.html").write_text('<!doctype html><script type="module" src="/assets/app.js"></script>')
    (static / "app.js").write_text("console.log('viewer')")
    (static / ".sources").write_text("hash")
    monkeypatch.setattr(viewer, "STATIC_DIR", static)
    return static


def _secure(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                      "connect-src 'self'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    for name, value in HEADERS.items():
        assert response.headers[name] == value


def test_every_viewer_path_is_the_page(live: LiveServer, built: Path) -> None:
    for path in ("/", "/p/project-1", "/p/project-1/jobs/job/logs/worker-0", "/p/x/jobs/y/logs"):
        r = httpx.get(live.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert r.text == (built / "index.html").read_text()
        assert r.headers["cache-control"] == "no-cache"
        _secure(r)


def test_assets_are_served_revalidated_and_nothing_else(live: LiveServer, built: Path) -> None:
    r = httpx.get(live.url + "/assets/app.js")
    assert r.status_code == 200 and r.text == "console.log('viewer')"
    assert r.headers["content-type"].startswith("text/javascript")
    _secure(r)
    again = httpx.get(live.url + "/assets/app.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content
    for name in (".sources", "missing.js", "..%2Fviewer.py", "%2e%2e", "sub%2Fapp.js"):
        r = httpx.get(live.url + "/assets/" + name)
        assert (r.status_code, r.json()["error_code"]) == (404, "APIGW.0101"), name
    assert httpx.get(live.url + "/assets/../http/viewer.py").status_code == 404


def test_without_a_bundle_the_page_says_how_to_build_it(live: LiveServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(viewer, "STATIC_DIR", tmp_path / "nothing")
    r = httpx.get(live.url + "/")
    assert r.status_code == 503 and "npm ci" in r.text and "npm run build" in r.text
    _secure(r)
    assert httpx.get(live.url + "/healthz").status_code == 200  # the API works as ever

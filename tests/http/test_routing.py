"""Routing over a real socket: no redirect built from the request's Host, and 405s that say what is allowed."""

from __future__ import annotations

import orjson
from support.live import LiveServer
from support.rawhttp import RawRequest

PROJECT = "0123456789abcdef0123456789abcdef"
NOT_FOUND = ("APIGW.0101", "The API does not exist or has not been published in the environment.")


def test_a_trailing_slash_is_a_404_not_a_redirect_to_any_host(live: LiveServer) -> None:
    """Before, `GET /healthz/` with `Host: evil.example` answered 307 to http://evil.example/healthz."""
    for target in ("/healthz/", f"/v2/{PROJECT}/training-jobs/x/", "/openapi.json/"):
        with RawRequest(live.url, "GET", target, {"Host": "evil.example"}) as raw:
            answer = raw.start().response()
        body = orjson.loads(answer.body)
        assert (answer.status, body["error_code"], body["error_msg"]) == (404, *NOT_FOUND), target
        assert "location" not in answer.headers
        assert body["request_id"] == answer.headers["x-request-id"]
    with RawRequest(live.url, "GET", "/healthz", {"Host": "evil.example"}) as raw:
        assert raw.start().response().status == 200


def test_a_wrong_method_is_405_with_every_method_of_the_path(live: LiveServer) -> None:
    with live.client() as http:
        job = http.request("PUT", f"/v2/{PROJECT}/training-jobs/some-job")
        assert (job.status_code, job.json()["error_code"]) == (405, "ModelArts.2803")
        assert set(job.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
        health = http.post("/healthz")
        assert (health.status_code, set(health.headers["allow"].split(", "))) == (405, {"GET", "HEAD"})
        searches = http.get(f"/v2/{PROJECT}/training-job-searches")
        assert (searches.status_code, searches.headers["allow"]) == (405, "POST")
        assert http.delete(f"/v2/{PROJECT}/training-jobs/some-job").status_code == 400  # both methods still routed

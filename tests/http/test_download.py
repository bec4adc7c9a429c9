"""Temporary links (ShowObsUrlOfTrainingJobLogs) and the download they point to."""

from __future__ import annotations

import gzip
import time
from urllib.parse import parse_qs, urlsplit

import httpx
from support.engine import new_job
from support.live import LiveServer
from support.sdk import PROJECT

from jobtail.auth.links import link_key, sign_link
from jobtail.auth.secrets import load_master_key
from jobtail.core.types import TaskRef


def _setup(live: LiveServer) -> tuple[str, bytes]:
    job_id = new_job(live.store, PROJECT, "download", node_count=2).id
    ref = TaskRef(PROJECT, job_id, "worker-0")
    log = b"".join(b"%06d \xe6\x90\x8d\xe5\xa4\xb1 step\n" % i for i in range(20_000))
    for i in range(0, len(log), 65_536):
        live.store.append(ref, log[i : i + 65_536])
        if i % (4 * 65_536) == 0:
            live.store.seal(ref)
    return job_id, log


def _link(http: httpx.Client, job_id: str, **params: str) -> str:
    r = http.get(f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs/url", params=params)
    assert r.status_code == 200, r.text
    return str(r.json()["obs_url"])


def test_link_serves_the_whole_log_with_ranges_and_gzip(live: LiveServer) -> None:
    job_id, log = _setup(live)
    with live.client() as http:
        url = _link(http, job_id)
    with httpx.Client() as anonymous:  # the link is the only credential
        whole = anonymous.get(url, headers={"accept-encoding": "identity"})
        assert whole.status_code == 200
        assert whole.content == log
        assert whole.headers["content-type"] == "text/plain; charset=utf-8"
        assert "content-disposition" not in whole.headers
        assert whole.headers["x-request-id"]
        for header, expected, content_range in [
            ("bytes=10-19", log[10:20], f"bytes 10-19/{len(log)}"),
            ("bytes=-7", log[-7:], f"bytes {len(log) - 7}-{len(log) - 1}/{len(log)}"),
            (f"bytes={len(log) - 3}-", log[-3:], f"bytes {len(log) - 3}-{len(log) - 1}/{len(log)}"),
            ("bytes=5-999999999", log[5:], f"bytes 5-{len(log) - 1}/{len(log)}"),
        ]:
            part = anonymous.get(url, headers={"range": header})
            assert (part.status_code, part.content, part.headers["content-range"]) == (206, expected, content_range)
        for header in (f"bytes={len(log)}-", "bytes=-0", "bytes=9-3"):
            refused = anonymous.get(url, headers={"range": header})
            assert refused.status_code == 416, header
            assert refused.headers["content-range"] == f"bytes */{len(log)}"
        assert anonymous.get(url, headers={"range": "bytes=0-1,5-6"}).content == log  # several ranges: all
        assert anonymous.get(url, headers={"range": "lines=1-2"}).content == log
        zipped = anonymous.get(url, headers={"accept-encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == log  # httpx decodes it
        with anonymous.stream("GET", url, headers={"accept-encoding": "gzip"}) as streamed:
            raw = b"".join(streamed.iter_raw())
        assert gzip.decompress(raw) == log and len(raw) < len(log) // 3


def test_download_mode_and_refused_links(live: LiveServer) -> None:
    job_id, log = _setup(live)
    with live.client() as http:
        url = _link(http, job_id, **{"Content-Type": "application/octet-stream"})
        header_url = http.get(f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-0/logs/url",
                              headers={"content-type": "application/octet-stream"}).json()["obs_url"]
        no_log = http.get(f"/v2/{PROJECT}/training-jobs/{job_id}/tasks/worker-1/logs/url")
        assert (no_log.status_code, no_log.json()["error_code"]) == (400, "ModelArts.2818")
    assert "mode=download" in header_url
    with httpx.Client() as anonymous:
        r = anonymous.get(url)
        assert r.content == log
        assert r.headers["content-disposition"] == f'attachment; filename="modelarts-job-{job_id}-worker-0.log"'
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        tampered = [
            {**query, "signature": "0" * 64},
            {**query, "mode": "preview"},
            {**query, "expires": str(int(query["expires"]) + 1)},
            {k: v for k, v in query.items() if k != "signature"},
        ]
        for params in tampered:
            refused = anonymous.get(base, params=params)
            assert (refused.status_code, refused.json()["error_code"]) == (403, "APIGW.0306"), params
        other_task = anonymous.get(base.replace("/worker-0/", "/worker-1/"), params=query)
        assert other_task.status_code == 403
        past = int(time.time()) - 1
        key = link_key(load_master_key(live.settings.data_dir / "master.key"))
        expired = {"mode": "download", "expires": str(past),
                   "signature": sign_link(key, PROJECT, job_id, "worker-0", "download", past)}
        r = anonymous.get(base, params=expired)
        assert r.status_code == 403 and "expired" in r.json()["error_msg"]


def test_malformed_and_huge_ranges_get_a_clear_answer_never_a_500(live: LiveServer) -> None:
    """Numbers of any length are judged without converting them (Python refuses int() of over
    4300 digits): a start past the end is unsatisfiable, a huge end or suffix means "to the end";
    a range that is not `bytes=` syntax is ignored (RFC 9110 §14.2) and the whole log is served."""
    job_id, log = _setup(live)
    size, huge = len(log), "9" * 4301
    with live.client() as http:
        url = _link(http, job_id)
    with httpx.Client() as anonymous:
        for header in (f"bytes={huge}-", f"bytes={huge}-{huge}", f"bytes={size}-{huge}", "bytes=0000000000000000000"
                       f"{size}-", f"bytes={'9' * 19}-"):
            refused = anonymous.get(url, headers={"range": header})
            assert refused.status_code == 416, header[:40]
            assert refused.headers["content-range"] == f"bytes */{size}"
            body = refused.json()
            assert body["error_code"] == "Jobtail.0416" and body["full_size"] == size and body["request_id"]
        for header, expected in [(f"bytes=0-{huge}", log), (f"bytes=-{huge}", log), (f"bytes=7-{huge}", log[7:]),
                                 ("bytes=0000000000000000000000003-00000000000000000000004", log[3:5]),
                                 ("Bytes=1-2", log[1:3])]:
            part = anonymous.get(url, headers={"range": header})
            assert (part.status_code, part.content) == (206, expected), header[:40]
        for header in ("bytes=abc-", "bytes=1-2-3", "bytes=--1", "bytes=-", "bytes=", "bytes=1+-2", "bytes=0x10-",
                       "bytes = 1-2", "bytes=\u00b2-", "bytes=\u0663-", "bytes=" + "1-2," * 2000,
                       f"bytes={huge}"):
            ignored = anonymous.get(url, headers={"range": header.encode("utf-8")})
            assert (ignored.status_code, ignored.content) == (200, log), header[:40]

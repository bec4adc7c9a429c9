"""Request bodies: what unproven callers can make the server hold, over real HTTP.

The memory tests run `jobtail serve` as a real process (with its malloc tuning, which keeps
freed memory in the heap) and read its resident set from /proc while slow clients send 15 MiB
bodies: a burst without valid credentials costs nothing, and one of signed bodies that are
checked only after they arrive is bounded by `max_unverified_body_reads`.
"""

from __future__ import annotations

import json
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from support.engine import new_job
from support.identity import Key, SecureServer
from support.live import LiveServer
from support.rawhttp import RawRequest, RawResponse
from support.serve import ServeProcess, jobtail

from jobtail.auth import manage
from jobtail.auth.authenticator import Authenticator
from jobtail.auth.secrets import load_master_key
from jobtail.auth.signing import sign_request
from jobtail.auth.sql_store import SqlIdentityStore
from jobtail.http.guard import IdentityGuard

MiB = 1024 * 1024
BODY = 15 * MiB
PIECE = MiB


def rss(pid: int) -> int:
    """Resident set size of process `pid`, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def signed_head(url: str, key: Key, method: str, target: str, body: bytes, content_type: str) -> dict[str, str]:
    host = url.removeprefix("http://")
    headers = {"Host": host, "Content-Type": content_type, "X-Project-Id": key.project_id}
    return {**headers, **sign_request(method, target, headers, body, key.access_key, key.secret_key),
            "Content-Length": str(len(body))}


def slow_post(url: str, target: str, headers: dict[str, str], body: bytes, answers: list[RawResponse],
              heads_sent: threading.Barrier, pause: float = 0.1) -> None:
    """Send the head, then (once every client has sent its head) the body a piece at a time,
    stopping if the server hangs up; keep the answer."""
    with RawRequest(url, "POST", target, headers, timeout=60) as raw:
        raw.start()
        heads_sent.wait(timeout=30)
        for at in range(0, len(body), PIECE):
            if not raw.send(body[at:at + PIECE]):
                break
            time.sleep(pause)
        answers.append(raw.response())


def burst(server: ServeProcess, requests: list[tuple[str, dict[str, str], bytes]]) -> tuple[list[RawResponse], int]:
    """Send `requests` at once as slow clients; their answers and the server's peak RSS meanwhile."""
    assert server.proc is not None
    answers: list[RawResponse] = []
    heads_sent = threading.Barrier(len(requests))
    threads = [threading.Thread(target=slow_post, args=(server.url, target, headers, body, answers, heads_sent))
               for target, headers, body in requests]
    for thread in threads:
        thread.start()
    peak = 0
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss(server.proc.pid))
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    return answers, peak


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(*options: str) -> ServeProcess:
        server = ServeProcess(tmp_path / f"data{len(started)}", *options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def settle(server: ServeProcess) -> int:
    """The server's RSS once a few requests have warmed it up (imports, caches, the first lookups)."""
    assert server.proc is not None
    for _ in range(3):
        burst(server, [(f"/v2/{server.project()}/training-job-searches", {"Host": "x", "Content-Length": "2"}, b"{}")])
    time.sleep(0.2)
    return rss(server.proc.pid)


def test_bodies_without_valid_credentials_cost_no_memory(served: Callable[..., ServeProcess]) -> None:
    """12 slow 15 MiB POSTs with no, a wrong or an unknown credential: each is answered 401 before
    its body, and the server's memory does not grow by their bodies (before, it read all 180 MiB,
    and kept it)."""
    server = served()
    assert server.proc is not None
    project = server.project()
    job = jobtail("admin", "job", "create", "--project", project, "--name", "j", "--data-dir", str(server.data_dir)).strip()
    append = f"/v2/{project}/training-jobs/{job}/tasks/worker-0/logs?offset=0"
    body = b"x" * BODY
    unknown = Key("AKNOTKNOWN0000000000", "S" * 40, project)
    heads = [
        {"Host": "x", "Content-Type": "application/octet-stream", "Content-Length": str(BODY)},
        {"Host": "x", "X-Auth-Token": "not-a-token", "Content-Length": str(BODY)},
        signed_head(server.url, unknown, "POST", append, body, "application/octet-stream"),
    ]
    before = settle(server)
    answers, peak = burst(server, [(append, heads[i % 3], body) for i in range(12)])
    assert sorted(a.status for a in answers) == [401] * 12
    time.sleep(0.5)
    after = rss(server.proc.pid)
    assert peak - before < 48 * MiB, (before, peak)  # 12 bodies held would be 180 MiB
    assert after - before < 48 * MiB, (before, after)


def test_signed_bodies_are_read_only_as_many_at_once_as_allowed(served: Callable[..., ServeProcess]) -> None:
    """12 slow 15 MiB signed JSON bodies of a valid key (the signature can be checked only once a
    body is in) with `--max-unverified-body-reads 2`: two are read and answered, ten refused at
    once with 429 and Retry-After, and the server's memory stays within what two bodies take."""
    server = served("--max-unverified-body-reads", "2")
    assert server.proc is not None
    credentials = json.loads(server.admin_credentials().read_text())
    key = Key(credentials["access_key"], credentials["secret_key"], credentials["project_id"])
    searches = f"/v2/{key.project_id}/training-job-searches"
    body = b"{}".ljust(BODY)
    head = signed_head(server.url, key, "POST", searches, body, "application/json")
    before = settle(server)
    answers, peak = burst(server, [(searches, head, body) for _ in range(12)])
    assert sorted(a.status for a in answers) == [200] * 2 + [429] * 10
    refused = [a for a in answers if a.status == 429]
    assert {orjson.loads(a.body)["error_code"] for a in refused} == {"APIGW.0308"}
    assert {a.headers["retry-after"] for a in refused} == {"1"}
    time.sleep(0.5)
    after = rss(server.proc.pid)
    assert peak - before < 4 * BODY + 32 * MiB, (before, peak)  # each read may hold its pieces and their join
    assert after - before < 4 * BODY + 32 * MiB, (before, after)


# -------------------------------------------------------------------- the cap, in process


@pytest.fixture
def capped(live_factory: Callable[..., LiveServer], identity: SqlIdentityStore, tmp_path: Path) -> SecureServer:
    """A server behind the IdentityGuard that reads one unproven body at a time."""
    master_key = load_master_key(tmp_path / "master.key")
    authenticator = Authenticator(identity, master_key)
    guard = IdentityGuard(authenticator)
    live = live_factory(guard=guard, authenticator=authenticator, executor="none", max_unverified_body_reads=1)
    project = manage.create_project(identity, "capped").id
    job_id = new_job(live.store, project, "capped-job", node_count=1).id
    return SecureServer(live, guard, identity, master_key, project, job_id)


def until_refused(send: Callable[[], RawResponse]) -> RawResponse:
    """`send()` again until the answer is the cap's 429 (the holder's head may still be on its way)."""
    deadline = time.monotonic() + 20
    while (answer := send()).status != 429:
        assert time.monotonic() < deadline, answer
        time.sleep(0.05)
    return answer


def test_the_cap_counts_only_unproven_bodies_and_frees_its_slot(capped: SecureServer) -> None:
    key = capped.key("developer")
    searches = f"/v2/{capped.project}/training-job-searches"
    body = b"{}".ljust(200_000)

    def search() -> RawResponse:
        with RawRequest(capped.url, "POST", searches, signed_head(capped.url, key, "POST", searches, body,
                                                                   "application/json")) as raw:
            raw.start().send(body)
            return raw.response()

    def login() -> RawResponse:
        login_body = b'{"auth": {}}'
        with RawRequest(capped.url, "POST", "/v3/auth/tokens", {"Host": "x", "Content-Type": "application/json",
                                                                "Content-Length": str(len(login_body))}) as raw:
            raw.start().send(login_body)
            return raw.response()

    def hold() -> RawRequest:
        holder = RawRequest(capped.url, "POST", searches, signed_head(capped.url, key, "POST", searches, body,
                                                                      "application/json")).start()
        holder.send(body[:1000])  # and the rest later: it holds the one slot meanwhile
        return holder

    append = f"/v2/{capped.project}/training-jobs/{capped.job_id}/tasks/worker-0/logs?offset=0"
    holder, early = hold(), []
    deadline = time.monotonic() + 20
    while (refused := search()).status != 429:  # the holder's head may still be on its way
        # Seen once in a full run on the shared PostgreSQL: no 429 for 20 s, so the holder had been
        # answered before its body. Keep how, and hold the slot again.
        if select.select([holder.sock], [], [], 0)[0]:
            early.append(holder.response())
            holder.close()
            holder = hold()
        assert time.monotonic() < deadline and len(early) < 3, (refused, early)
        time.sleep(0.05)
    assert (refused.status, orjson.loads(refused.body)["error_code"], refused.headers["retry-after"]) == (
        429, "APIGW.0308", "1")
    assert login().status == 429  # a login's body is unproven too
    with capped.client(token=capped.token("developer")) as client:  # a token is proven before its body
        r = client.request("POST", append, content=b"line\n", headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    with capped.client(capped.key("ingest")) as client:  # so is a signature over UNSIGNED-PAYLOAD
        r = client.request("POST", append.replace("offset=0", "offset=5"), content=b"more\n",
                           headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
    holder.send(body[1000:])
    assert holder.response().status == 200
    holder.close()
    assert search().status == 200  # the slot is free again
    gone = RawRequest(capped.url, "POST", searches, signed_head(capped.url, key, "POST", searches, body,
                                                                "application/json")).start()
    gone.send(body[:1000])
    until_refused(search)
    gone.close()  # a client that goes away mid-body frees its slot too
    deadline = time.monotonic() + 20
    while (answer := search()).status != 200:
        assert answer.status == 429 and time.monotonic() < deadline, answer
        time.sleep(0.05)

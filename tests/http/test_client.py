"""jobtail.client against a live server behind the real guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.identity import SecureServer

from jobtail.client import Client, Credentials, RequestFailed, connect


def write_credentials(path: Path, secure: SecureServer, role: str = "developer", endpoint: str | None = None) -> Path:
    key = secure.key(role)
    path.write_text(json.dumps({"endpoint": endpoint or secure.url, "project_id": key.project_id,
                                "access_key": key.access_key, "secret_key": key.secret_key}))
    return path


def test_connect_reads_the_credentials_file_and_signs(secure: SecureServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBTAIL_URL", raising=False)
    monkeypatch.setenv("JOBTAIL_CREDENTIALS", str(write_credentials(tmp_path / "c.json", secure)))
    logs = f"/v2/{{project_id}}/training-jobs/{secure.job_id}/tasks/worker-0/logs"
    with connect() as client:
        assert client.project_id == secure.project
        assert client.json("POST", logs, content=b"a\n", headers={"Content-Type": "application/octet-stream"}) == {
            "full_size": 2}
        # odd query strings sign alike on both sides (spaces, plus signs, UTF-8, repeated keys)
        assert client.json("POST", logs, params=[("offset", "2"), ("z", "a b+c/é"), ("a", "2"), ("a", "1")],
                           content=b"b\n") == {"full_size": 4}
        assert client.json("GET", logs + "/preview")["content"] == "a\nb\n"
        with pytest.raises(RequestFailed) as failed:
            client.json("GET", f"/v2/{{project_id}}/training-jobs/{secure.job_id}/tasks/worker-9/logs/preview")
    assert (failed.value.status, failed.value.code) == (400, "ModelArts.2788")
    assert len(failed.value.request_id) == 32


def test_url_from_the_environment_wins(secure: SecureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_credentials(tmp_path / "c.json", secure, "viewer", endpoint="http://127.0.0.1:9")
    monkeypatch.setenv("JOBTAIL_URL", secure.url)
    with connect(credentials_file=path) as client:
        r = client.request("GET", f"/v2/{{project_id}}/training-jobs/{secure.job_id}/tasks/worker-0/logs/preview")
    assert r.json()["error_code"] == "ModelArts.2818"  # authenticated: the task has no log yet


def test_tokens_and_failures(secure: SecureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBTAIL_URL", raising=False)
    with connect(secure.url, credentials_file=tmp_path / "absent.json", token=secure.token("viewer"),
                 project_id=secure.project) as client:
        r = client.request("GET", f"/v2/{{project_id}}/training-jobs/{secure.job_id}/tasks/worker-0/logs/preview")
        assert r.json()["error_code"] == "ModelArts.2818"
    wrong = Credentials("AAAAAAAAAAAAAAAAAAAA", "B" * 40, secure.project)
    with Client(secure.url, credentials=wrong) as client, pytest.raises(RequestFailed) as failed:
        client.json("GET", f"/v2/{{project_id}}/training-jobs/{secure.job_id}")
    assert (failed.value.status, failed.value.code) == (401, "APIGW.0301")
    with pytest.raises(FileNotFoundError):
        connect(credentials_file=tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a jobtail credentials file"):
        connect(credentials_file=tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no server URL"):
        connect(credentials_file=tmp_path / "absent.json", token="t")

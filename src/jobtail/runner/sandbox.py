"""The sandbox every task runs in (`--executor-isolation bwrap`, the default): bubblewrap.

A task must not get at what lets a job of one project act for another: the master key, the
database, the log segments, the server's process, other jobs' files. `bwrap` starts the task's
supervisor (`shim.py`) in new user, mount, pid, IPC and UTS namespaces, with every capability
dropped and further user namespaces disabled. The task sees only:

| path | how |
|---|---|
| `/usr`, `/etc`, `/bin`, `/sbin`, `/lib*` | read-only, as on the host (`/bin` → `usr/bin` stays a symlink); files in `/etc` that only root may read (`/etc/shadow`, private keys) are covered |
| the interpreters: the directories of the server's `PATH` (`…/bin` or `…/shims` → its parent, e.g. `/root/.pyenv`, a venv, `/opt/conda`) and the server's own Python (`sys.prefix`, `sys.base_prefix`) | read-only |
| `--executor-shared-dirs` | read-write, the same for every task: the operator's choice (code, data sets) |
| its job's working directory | read-write: `algorithm.working_dir` if the job names one (it must lie in a shared directory), else `DATA_DIR/work/<project>/<job>`, made for the job and shared by its tasks only |
| `$HOME`, `/tmp` | empty, private to the task, gone when it ends (interpreters under `$HOME` are bound into it) |
| `/dev/shm` | the job's: shared by its tasks only (NCCL's shared-memory transport between ranks), gone when the job ends |
| `/proc`, `/dev` | of its own pid namespace; `null`, `zero`, `random`, `urandom`, `tty`, `shm`, and GPU device nodes (`/dev/nvidia*`, `/dev/dri`) |
| the network | the host's (tasks of a job meet on `127.0.0.1:MASTER_PORT`) |

and never the data directory, the master key file, the SQLite database (with its `-wal`/`-shm`
and `.heads/`), a `file://` blob directory or an export root: each is covered (an empty tmpfs, or an unreadable file) wherever
it would otherwise show through a bound directory. `/root`, `/home`, `/var`, `/run`, `/srv`,
`/mnt` and `/opt` are not there except for what the table binds.

The user namespace maps the task's uid to the server's: a server running as root gives its tasks
uid 0 *without capabilities*, so permission bits still let them read and write every root-owned
file they can see — which is why only the paths above are visible, and why the operator of a
multi-tenant server should run it as an unprivileged user (README, Security).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from jobtail.core.errors import JobtailError
from jobtail.runner.environment import MARKERS
from jobtail.settings import Settings

SYSTEM_DIRS = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
PREFIX_NAMES = ("bin", "sbin", "shims")  # a PATH entry named so stands for its parent (the prefix)
SHIM_INSIDE = "/run/jobtail/shim.py"
SHM = Path("/dev/shm")
DEVICES = ("/dev/nvidia*", "/dev/dri")
PROBE_SECONDS = 30.0
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or pass --executor-isolation none "
                "to run jobs unsandboxed (one tenant only: a job can then read the master key)")


def environment_args(env: Mapping[str, str]) -> bytes:
    """`env` as bwrap arguments for `--args FD`: the task gets exactly `env`, while bwrap itself
    runs with `launcher_environment` — it runs on the host, where a job's LD_PRELOAD or
    LD_LIBRARY_PATH must not reach it — and the values stay out of its command line, which every
    user of the host may read. A NUL would split one argument into several, i.e. smuggle bwrap
    options in: raises ValueError, as `os.execve` does for an environment."""
    args = ["--clearenv"]
    for name, value in env.items():
        if "\0" in name or "\0" in value:
            raise ValueError(f"embedded null byte in the environment variable {name!r}")
        args += ["--setenv", name, value]
    return b"".join(arg.encode("utf-8", "surrogateescape") + b"\0" for arg in args)


def launcher_environment(env: Mapping[str, str]) -> dict[str, str]:
    """bwrap's own environment: a system PATH and the task's markers (recovery looks for them)."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **{k: env[k] for k in MARKERS if k in env}}


class SandboxUnavailable(JobtailError):
    """bwrap is missing or cannot create its namespaces here; the message says what to do."""


class WorkingDirRefused(JobtailError):
    """A job named a working directory that tasks may not use."""


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _prefix(entry: Path, homes: set[Path]) -> Path:
    """The directory to bind for a PATH entry: `…/bin` → `…`, unless that would be `/`, one of
    the `homes` or a top-level directory (then only the entry itself)."""
    parent = entry.parent
    if entry.name in PREFIX_NAMES and len(parent.parts) > 2 and parent not in homes:
        return parent
    return entry


def interpreter_dirs(environ: Mapping[str, str]) -> list[Path]:
    """Directories holding the interpreters a task may run (see the module docstring)."""
    found: list[Path] = []
    homes = {_real(user.pw_dir) for user in pwd.getpwall()} | {_real(os.path.expanduser("~"))}
    for entry in environ.get("PATH", "").split(os.pathsep):
        if entry.startswith("/") and os.path.isdir(entry):
            found += [_prefix(Path(os.path.normpath(entry)), homes), _prefix(_real(entry), homes)]
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYENV_ROOT"):
        if environ.get(name, "").startswith("/") and os.path.isdir(environ[name]):
            found.append(_real(environ[name]))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(_real(sys.executable)).parent.parent)}:
        found += [Path(prefix), _real(prefix)]
    return found


def _unreadable_in(directory: str) -> tuple[list[str], list[str]]:
    """(files, directories) under `directory` that other users may not read: root's secrets."""
    files, dirs = [], []
    for root, subdirs, names in os.walk(directory):
        for name in list(subdirs):
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and not mode & stat.S_IROTH:
                dirs.append(path)
                subdirs.remove(name)
        for name in names:
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and not mode & stat.S_IROTH:
                files.append(path)
    return files, dirs


def _private_dir(path: Path) -> None:
    """Make `path` (mode 700), or check that it is ours already: under world-writable /dev/shm
    another user could have put a directory of theirs, or a symlink to one of ours, there first."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    found = os.lstat(path)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        raise PermissionError(errno.EPERM, "not a private directory of this server's user (remove it)", str(path))


@dataclass(frozen=True)
class JobPlaces:
    """The host directories of one job that its tasks, and only they, see read-write."""

    own_dir: Path | None  # its working directory, when the job names none
    shm: Path | None  # its /dev/shm (None where the host has no /dev/shm: then each task has its own)


@dataclass(frozen=True)
class Sandbox:
    """What every task of one executor sees; `argv()` is the bwrap command line of one task."""

    bwrap: str
    readonly: tuple[Path, ...]
    shared: tuple[Path, ...]
    hidden_dirs: tuple[Path, ...]
    hidden_files: tuple[Path, ...]
    devices: tuple[str, ...]
    work_root: Path
    shm_root: Path | None

    @classmethod
    def for_settings(cls, settings: Settings, environ: Mapping[str, str] = os.environ) -> Sandbox:
        """The sandbox of an executor with `settings`; raises SandboxUnavailable (no bwrap, or
        a shared directory that would expose the data directory)."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable("jobtail runs jobs sandboxed with bubblewrap, but bwrap is not installed: "
                                     f"{INSTALL_HINT}.")
        data_dir = _real(settings.data_dir)
        private_dirs = [data_dir]
        private_files = [_real(settings.master_key_file)]
        # Paths as the backends themselves read them from the URLs (SQLite URI filenames,
        # file://localhost/, percent-encoding), so that no spelling of a URL escapes this.
        if make_url(settings.database_url).get_backend_name() == "sqlite":
            from jobtail.meta.sqlite import database_dirs

            with contextlib.suppress(ValueError):  # in memory: nothing on disk
                private_dirs += [_real(d) for d in database_dirs(settings.database_url)]
        if urlsplit(settings.blob_url).scheme == "file":
            from jobtail.blobs.local import directory_of

            private_dirs.append(_real(directory_of(settings.blob_url)))
        # every project's exported logs: the server writes them there, no task reads them
        private_dirs += [_real(root) for root in settings.export_root_paths if root.is_dir()]
        protected = private_dirs + private_files
        shared = []
        for entry in settings.executor_shared_dirs.split(os.pathsep):
            if not entry.strip():
                continue
            path = _real(entry.strip())
            if not path.is_dir():
                raise SandboxUnavailable(f"shared directory {entry} (--executor-shared-dirs) is not a directory.")
            if any(_inside(path, p) for p in protected) or len(path.parts) < 2 or path.parts[1] in SYSTEM_DIRS:
                raise SandboxUnavailable(f"shared directory {entry} (--executor-shared-dirs) may not be /, a system "
                                         "directory, or inside a directory the server keeps to itself (the data "
                                         "directory, the database's, the blob directory, an export root).")
            shared.append(path)
        candidates = {p for p in interpreter_dirs(environ)
                      if p.is_dir() and not any(_inside(p, x) for x in protected)
                      and not any(_inside(p, Path("/", s)) for s in SYSTEM_DIRS)}
        readonly = sorted(p for p in candidates if not any(p != q and _inside(p, q) for q in candidates))
        files, dirs = _unreadable_in("/etc")
        hidden_dirs = [Path(p) for p in dirs] + [p for p in private_dirs
                                                 if not any(p != q and _inside(p, q) for q in private_dirs)]
        hidden_files = [p for p in [*map(Path, files), *private_files] if not any(_inside(p, d) for d in hidden_dirs)]
        return cls(bwrap=bwrap, readonly=tuple(readonly), shared=tuple(shared),
                   hidden_dirs=tuple(hidden_dirs), hidden_files=tuple(hidden_files),
                   devices=tuple(sorted(d for pattern in DEVICES for d in glob.glob(pattern))),
                   work_root=data_dir / "work",
                   shm_root=SHM / f"jobtail-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]}"
                   if SHM.is_dir() else None)

    def job_dir(self, project_id: str, job_id: str) -> Path:
        """The directory of a job's own (its tasks' working directory unless it names one)."""
        return self.work_root / project_id / job_id

    def job_shm(self, job_id: str) -> Path | None:
        return None if self.shm_root is None else self.shm_root / job_id

    def places(self, project_id: str, job_id: str, *, own_dir: bool) -> JobPlaces:
        """The job's places (`own_dir`: with a working directory of its own), made mode 700."""
        places = JobPlaces(self.job_dir(project_id, job_id) if own_dir else None, self.job_shm(job_id))
        if places.own_dir is not None:  # in the data directory: nobody else can get at it
            places.own_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if places.shm is not None and self.shm_root is not None:
            _private_dir(self.shm_root)
            places.shm.mkdir(exist_ok=True, mode=0o700)
        return places

    def release(self, project_id: str, job_id: str, *, deleted: bool) -> None:
        """The job's tasks have all ended: drop its /dev/shm (and the directory of them all, once
        empty), and its own directory if `deleted`."""
        shm = self.job_shm(job_id)
        if shm is not None:
            shutil.rmtree(shm, ignore_errors=True)
            try:
                shm.parent.rmdir()
            except OSError:  # another job's is there (or it is gone already)
                pass
        if deleted:
            shutil.rmtree(self.job_dir(project_id, job_id), ignore_errors=True)

    def sweep_shm(self) -> None:
        """Drop every job's /dev/shm (at the start of a lease no job of this data directory runs)."""
        if self.shm_root is not None:
            shutil.rmtree(self.shm_root, ignore_errors=True)

    def working_dir(self, requested: str) -> Path:
        """The working directory a job named, if it lies in a shared directory (else raises
        WorkingDirRefused): tasks see nothing else of the host's directories."""
        path = _real(requested)
        if not any(_inside(path, shared) for shared in self.shared):
            raise WorkingDirRefused(f"working directory {requested} is not visible to sandboxed jobs; the operator "
                                    f"can share it with --executor-shared-dirs")
        return path

    def argv(self, *, places: JobPlaces, cwd: Path, command: list[str], info_fd: int | None = None,
             env_fd: int | None = None) -> list[str]:
        """The bwrap command line that runs `command` (the shim) for one task of a job, in `cwd`,
        with the job's `places` bound read-write; bwrap reads the task's environment from
        `env_fd` (`environment_args`) and writes the shim's pid (as seen from here) to `info_fd`."""
        args = [self.bwrap] + (["--args", str(env_fd)] if env_fd is not None else [])
        args += ["--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try", "--die-with-parent", "--as-pid-1", "--cap-drop", "ALL"]
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]
        for name in SYSTEM_DIRS:
            host = Path("/", name)
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for device in self.devices:
            args += ["--dev-bind", device, device]
        if places.shm is not None:
            args += ["--bind", str(places.shm), "/dev/shm"]
        home = os.environ.get("HOME", "")
        mounts: list[tuple[Path, list[str]]] = []
        if home.startswith("/") and len(Path(home).parts) > 1 and Path(home).parts[1] not in SYSTEM_DIRS:
            mounts.append((Path(home), ["--tmpfs", home]))
        mounts += [(p, ["--bind", str(p), str(p)]) for p in self.shared]
        mounts += [(p, ["--ro-bind", str(p), str(p)]) for p in self.readonly]
        for _, mount in sorted(mounts, key=lambda m: len(m[0].parts)):  # outer directories first
            args += mount
        visible = (*self.readonly, *self.shared, Path("/etc"))
        for path in self.hidden_dirs:
            if any(_inside(path, v) for v in visible):
                args += ["--tmpfs", str(path)]
        for path in self.hidden_files:
            if any(_inside(path, v) for v in visible) and path.exists():
                args += ["--ro-bind", "/dev/null", str(path)]
        if places.own_dir is not None:  # last: it lies in the data directory, hidden above
            args += ["--bind", str(places.own_dir), str(places.own_dir)]
        args += ["--ro-bind", str(Path(__file__).with_name("shim.py")), SHIM_INSIDE, "--remount-ro", "/",
                 "--chdir", str(cwd), "--", *command]
        return args

    def check(self) -> None:
        """Start one sandbox (`true` in an empty job directory); raises SandboxUnavailable with
        bwrap's own complaint when this kernel or container does not allow it."""
        self.work_root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the data directory, private
        probe = self.job_dir(".probe", "job")  # not /dev/shm: only the executor running jobs touches that
        probe.mkdir(parents=True, exist_ok=True, mode=0o700)
        argv = self.argv(places=JobPlaces(probe, None), cwd=probe, command=["/bin/true"])
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"bwrap could not start a sandbox ({exc}): {INSTALL_HINT}.") from None
        if done.returncode != 0:
            complaint = [line for line in done.stderr.decode(errors="replace").splitlines() if line.startswith("bwrap")]
            reason = complaint[-1] if complaint else f"exit code {done.returncode}"
            raise SandboxUnavailable(f"bwrap cannot start a sandbox here ({reason}): {INSTALL_HINT}.")

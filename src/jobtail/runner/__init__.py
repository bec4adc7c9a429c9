"""Running training jobs on this machine (the local executor).

    local.py        LocalExecutor: claims, queues, starts, watches and finishes jobs (one thread)
    job_run.py      one running job: its tasks and why it stops
    process.py      one task's process tree (through shim.py) and /proc helpers
    shim.py         the per-task supervisor process (standard library only)
    sandbox.py      the bubblewrap sandbox every task runs in (what it sees, its bwrap command line)
    capture.py      a task's output pipe → its task log
    environment.py  the variables a task sees
    owner.py        who owns a job, whether it is alive; the per-data-directory lease
    recovery.py     run records, and cleaning up after a runner that died

The HTTP app creates a LocalExecutor when `settings.executor == "local"` (`jobtail.http.app`).
"""

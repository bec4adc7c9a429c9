"""`jobtail ship`: send a command's output or a file to a task log, every byte exactly once.

    uplink.py    the server side: where the log ends, appends with explicit offsets, retries
                 with backoff and jitter on network errors, 5xx and 429
    state.py     the state file beside a shipped file: which file offset is which log offset
    files.py     ship a file, optionally following it across rotation like `tail -F`
    command.py   run a command and ship its merged stdout and stderr

Exactly once rests on the append endpoint's offset rules: every batch is sent with the offset
where its bytes belong, so a retried batch is acknowledged without being stored twice, and a
batch that would leave a gap is refused with the log's end offset.
"""

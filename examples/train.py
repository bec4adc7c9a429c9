"""A toy distributed training script whose output looks like a real one's (standard library only).

    jobtail submit --workers 2 -- python examples/train.py --epochs 3
    python examples/train.py --fail-at 2          # rank 0 raises in epoch 2 (see --fail-rank)
    python examples/train.py --crash-once         # rank 0 SIGKILLs itself in epoch 1 of attempt 1
    python examples/train.py --hang-at 2          # rank 0 stops printing (sleeps) in epoch 2

It reads what a distributed PyTorch launcher or ModelArts sets — `RANK`, `WORLD_SIZE`,
`MASTER_ADDR`, `MASTER_PORT`, `VC_TASK_INDEX` — and prints: a banner, per-epoch progress bars
redrawn with carriage returns (like tqdm, on stderr), ANSI-coloured metrics, a line in Chinese,
a warning through `warnings` (stderr), rank-dependent lines, and a traceback with `--fail-at`.
Only rank 0 prints the validation summary and saves "checkpoints", as real scripts do.
`--crash-once` knows its attempt from `JOBTAIL_ATTEMPT`, which jobtail's local executor sets
(1, then 2 after the first restart; unset counts as 1), so a job restarted by the
`fault-tolerance/job-retry-num` annotation dies only the first time.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import time
import warnings

GREEN, YELLOW, CYAN, BOLD, RESET = "\033[32m", "\033[33m", "\033[36m", "\033[1m", "\033[0m"


class DivergenceError(RuntimeError):
    """The loss went to infinity (what --fail-at simulates)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs to train (default 3)")
    parser.add_argument("--steps", type=int, default=20, help="steps per epoch (default 20)")
    parser.add_argument("--sleep", type=float, default=0.02, help="seconds per step (default 0.02)")
    parser.add_argument("--fail-at", type=int, metavar="EPOCH", help="raise an exception in this epoch (1-based)")
    parser.add_argument("--fail-rank", type=int, default=0, help="the rank that fails with --fail-at (default 0)")
    parser.add_argument("--crash-once", action="store_true",
                        help="the --fail-rank rank kills itself with SIGKILL in epoch 1, on attempt 1 only (JOBTAIL_ATTEMPT)")
    parser.add_argument("--hang-at", type=int, metavar="EPOCH",
                        help="the --fail-rank rank stops printing in this epoch (sleeps for an hour)")
    parser.add_argument("--seed", type=int, default=1234)
    return parser.parse_args(argv)


def progress_bar(epoch: int, epochs: int, step: int, steps: int, loss: float, started: float) -> str:
    width = 30
    done = int(width * step / steps)
    elapsed = time.monotonic() - started
    rate = step / elapsed if elapsed > 0 else 0.0
    bar = "█" * done + " " * (width - done)
    return (f"\rEpoch {epoch}/{epochs}: {100 * step // steps:3d}%|{bar}| {step}/{steps} "
            f"[{elapsed:05.2f}s, {rate:5.1f}it/s, loss={loss:.4f}]")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", os.environ.get("VC_TASK_INDEX", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    master = f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', '29500')}"
    rng = random.Random(args.seed + rank)

    print(f"{BOLD}[rank {rank}/{world}] toy-resnet training, master {master}, pid {os.getpid()}{RESET}")
    print(f"[rank {rank}] 开始训练：数据集 toy-imagenet，共 {args.epochs} 个周期")
    if rank == 0:
        warnings.warn("torch.cuda is not available; training on CPU", UserWarning, stacklevel=1)
    shard = 50_000 // world
    print(f"[rank {rank}] data shard: samples {rank * shard}..{(rank + 1) * shard - 1}")

    loss = 2.5 + rng.random() * 0.2
    for epoch in range(1, args.epochs + 1):
        started = time.monotonic()
        for step in range(1, args.steps + 1):
            time.sleep(args.sleep)
            loss = max(0.01, loss * (0.985 + rng.random() * 0.01))
            chosen = rank == args.fail_rank and step == args.steps // 2
            if chosen and args.crash_once and epoch == 1 and os.environ.get("JOBTAIL_ATTEMPT", "1") == "1":
                sys.stderr.write("\n")
                print(f"[rank {rank}] crashing on purpose (--crash-once)", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if chosen and args.hang_at == epoch:
                sys.stderr.write("\n")
                print(f"[rank {rank}] hanging on purpose (--hang-at {epoch})", flush=True)
                time.sleep(3600)
            if args.fail_at == epoch and rank == args.fail_rank and step == args.steps // 2:
                sys.stderr.write("\n")
                raise DivergenceError(f"loss is inf at epoch {epoch}, step {step} (rank {rank})")
            sys.stderr.write(progress_bar(epoch, args.epochs, step, args.steps, loss, started))
            sys.stderr.flush()
        sys.stderr.write("\n")
        accuracy = min(0.99, 1 - loss / 3 + rng.random() * 0.01)
        print(f"[rank {rank}] epoch {epoch}: loss={GREEN}{loss:.4f}{RESET} "
              f"acc={CYAN}{accuracy:.2%}{RESET} lr={0.1 * math.cos(math.pi * epoch / (2 * args.epochs)):.5f}")
        if rank == 0:
            print(f"{YELLOW}[rank 0] saved checkpoint ckpt/epoch-{epoch}.pt{RESET}")
    if rank == 0:
        print(f"{BOLD}Training finished: {args.epochs} epochs on {world} worker(s), final loss {loss:.4f}{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

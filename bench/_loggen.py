"""Deterministic, realistic training-log text for the benchmarks.

The text mimics what ModelArts training tasks print: timestamped lines with ANSI-coloured levels,
tqdm progress bars redrawn with `\\r`, tabs, quotes and backslashes (JSON escapes), about 2 % CJK
characters (by count), and now and then a very long line (tensor reprs). The mix
matters because decoding and JSON-encoding cost depends on it: pure ASCII is ~10x cheaper to
decode than text with multi-byte characters, and escapes make the JSON larger.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

MiB = 1024 * 1024
BLOCK = 64 * MiB  # large logs are copies of one block of this size (generating 2 GiB would be slow)
CHUNK = 8 * MiB  # the most handed to one `store.append` call
_BANNER = 128  # bytes of the per-copy header line that makes each block copy differ

_CJK_MESSAGES = [
    "数据加载完成，共 {n} 条样本",
    "保存检查点到 /cache/ckpt/step_{n}.pt",
    "学习率调整为 {f:.2e}",
    "验证集准确率：{f:.4f}",
    "梯度裁剪阈值 {f:.2f}，已跳过 {n} 个异常批次",
    "分布式训练初始化成功，节点数 {n}",
    "警告：显存占用超过 {n} MiB，请检查批大小",
    "第 {n} 轮训练结束，开始在验证集上评估模型性能",
    "正在从对象存储同步数据集分片，剩余 {n} 个文件",
]
_LEVELS = [("INFO", "32"), ("INFO", "32"), ("INFO", "32"), ("WARNING", "33"), ("DEBUG", "36")]
_BAR = " ▏▎▍▌▋▊▉█"


class LogText:
    """An endless, seeded stream of training-log lines; same seed, same bytes."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._ms = 1_795_000_000_000 + seed * 3_600_000  # epoch milliseconds, only ever increases
        self._step = 0

    def _stamp(self) -> str:
        self._ms += self._rng.randint(1, 400)
        s, ms = divmod(self._ms, 1000)
        m, sec = divmod(s % 86400, 60)
        h, mi = divmod(m, 60)
        return f"2026-11-27 {h:02d}:{mi:02d}:{sec:02d},{ms:03d}"

    def _line(self) -> str:
        rng, r = self._rng, self._rng.random()
        if r < 0.70:  # the bulk: a coloured step line
            self._step += 1
            level, colour = rng.choice(_LEVELS)
            return (
                f"{self._stamp()} - \x1b[{colour}m{level}\x1b[0m - [rank{rng.randint(0, 7)}] "
                f"step {self._step}/1000000\tloss={rng.uniform(0.1, 4):.4f}\tlr={rng.uniform(1e-5, 1e-3):.3e}"
                f"\tgrad_norm={rng.uniform(0.1, 9):.3f}\tthroughput={rng.uniform(100, 900):.1f} samples/s\n"
            )
        if r < 0.80:  # a tqdm bar redrawn several times on one terminal line
            total, parts = 1000, []
            done = rng.randint(0, 900)
            for _ in range(rng.randint(3, 10)):
                done = min(total, done + rng.randint(1, 40))
                frac = done / total
                full, rest = divmod(int(frac * 10 * 8), 8)
                bar = ("█" * full + (_BAR[rest] if full < 10 else "")).ljust(10)
                parts.append(
                    f"Epoch {self._step // 1000}: {frac:4.0%}|{bar}| {done}/{total} "
                    f"[01:{rng.randint(0, 59):02d}<02:{rng.randint(0, 59):02d}, {rng.uniform(1, 9):.2f}it/s, "
                    f"loss={rng.uniform(0.1, 2):.3f}]"
                )
            return "\r".join(parts) + "\n"
        if r < 0.94:  # CJK messages: tuned so ~2 % of all characters are CJK
            msg = "；".join(c.format(n=rng.randint(1, 99999), f=rng.random()) for c in rng.sample(_CJK_MESSAGES, 2))
            return f"{self._stamp()} - \x1b[32mINFO\x1b[0m - {msg}\n"
        if r < 0.985:  # quotes, backslashes, a Windows-ish path: JSON escapes
            return (
                f'{self._stamp()} - \x1b[33mWARNING\x1b[0m - "dataloader" worker {rng.randint(0, 15)} '
                f'slow: C:\\data\\shard_{rng.randint(0, 999):03d}.tfrecord took {rng.uniform(1, 30):.1f}s '
                f"(threshold='5.0s')\n"
            )
        if r < 0.998:  # a short traceback
            return (
                "Traceback (most recent call last):\n"
                '  File "/home/ma-user/train.py", line 212, in <module>\n    main()\n'
                f"RuntimeError: NCCL timeout on rank {rng.randint(0, 63)} after {rng.randint(60, 1800)} s\n"
            )
        # a long line of 2-19 KB: a tensor repr
        n = rng.randint(250, 2200)
        values = ", ".join(f"{rng.uniform(-3, 3):.4f}" for _ in range(n))
        return f"{self._stamp()} - \x1b[36mDEBUG\x1b[0m - tensor([{values}], device='npu:0')\n"

    def generate(self, size: int) -> bytes:
        """At least `size` bytes of whole lines."""
        parts: list[bytes] = []
        total = 0
        while total < size:
            piece = "".join([self._line() for _ in range(2000)]).encode()
            parts.append(piece)
            total += len(piece)
        return b"".join(parts)


def fit(text: bytes, size: int) -> bytes:
    """Exactly `size` bytes: the start of `text`, ending in a newline, valid UTF-8.

    The last line is cut (never inside a multi-byte character) and padded with spaces.
    """
    if size <= 0:
        return b""
    head = text[: size - 1]
    cut = len(head)
    j = cut
    while j > 0 and 0x80 <= head[j - 1] < 0xC0:  # step back over continuation bytes
        j -= 1
    if j > 0 and head[j - 1] >= 0xC0:  # a lead byte: is its sequence complete?
        lead = head[j - 1]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if cut - (j - 1) < need:
            cut = j - 1
    return head[:cut] + b" " * (size - 1 - cut) + b"\n"


def banner(index: int) -> bytes:
    """The `_BANNER`-byte line that starts copy `index` of the shared block."""
    line = f"\x1b[1m=== resume from checkpoint shard {index:04d}, global step {index * 250_000} ===\x1b[0m"
    return line.encode().ljust(_BANNER - 1) + b"\n"


class LogMaker:
    """Builds task logs of given sizes; large ones reuse one generated 64 MiB block."""

    def __init__(self, seed: int = 7) -> None:
        self._seed = seed
        self._body: bytes | None = None

    def body(self) -> bytes:
        """The shared block body (`BLOCK - _BANNER` bytes), generated on first use."""
        if self._body is None:
            self._body = fit(LogText(self._seed).generate(BLOCK), BLOCK - _BANNER)
        return self._body

    def chunks(self, size: int) -> Iterator[bytes]:
        """The log of exactly `size` bytes, as pieces of at most CHUNK bytes."""
        if size <= CHUNK:  # small logs get their own text
            data = fit(LogText(self._seed + size).generate(size), size)
            yield data
            return
        body, done, index = self.body(), 0, 0
        while done < size:
            part = banner(index) + body
            part = part if size - done >= len(part) else fit(part, size - done)
            for at in range(0, len(part), CHUNK):
                yield part[at : at + CHUNK]
            done += len(part)
            index += 1


def text_stats(data: bytes) -> dict[str, float]:
    """Share of CJK and of non-ASCII characters (by count) and the longest line, for the report."""
    text = data.decode("utf-8", "replace")
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef")
    non_ascii = len(text) - len(data.decode("ascii", "ignore"))
    return {
        "chars": len(text),
        "cjk_fraction": cjk / max(1, len(text)),
        "non_ascii_fraction": non_ascii / max(1, len(text)),
        "longest_line": max((len(line) for line in data.split(b"\n")), default=0),
        "cr_count": data.count(b"\r"),
    }

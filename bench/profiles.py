"""Sampling profiles of the processes a figure drives (py-spy), and their summaries.

`python -m bench --only slab --profile DIR` records, while each figure runs,
the subscriber(s), the publisher and the benchmark process itself (the client
side), as collapsed stacks (`DIR/<figure>-<process>.txt`, flamegraph input),
and writes next to each a summary of where the samples fall (`.top.txt`).
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy program, if installed (next to this Python first)."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    """`py-spy record` attached to one process until `stop`."""

    def __init__(self, pid: int, out: Path, rate: int = 250, idle: bool = False) -> None:
        self.pid, self.out, self.rate, self.idle = pid, out, rate, idle
        self.proc: subprocess.Popen | None = None

    def start(self) -> Recorder:
        """Attach (non-blocking sampling: the target is never paused)."""
        program = py_spy()
        if program is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        args = [program, "record", "--pid", str(self.pid), "--rate", str(self.rate)]
        args += ["--format", "raw", "--output", str(self.out), "--nonblocking"]
        if self.idle:
            args.append("--idle")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)  # let it attach before the figure starts
        return self

    def stop(self) -> None:
        """Stop sampling and let py-spy write its file."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _frames(stack: str) -> list[str]:
    # py-spy writes `function (file:line)`; drop the line so a function is one entry.
    return [_LINE.sub(")", f.strip()) for f in stack.split(";") if f.strip()]


def summarize(path: Path, top: int = 30) -> str:
    """The functions holding the most samples: inclusive (anywhere on the stack) and self."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            own[frames[-1]] += n
    if not total:
        return f"{path.name}: no samples\n"
    lines = [f"{path.name}: {total} samples (CPU only unless recorded with --idle)", ""]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"{title}:")
        for frame, n in counter.most_common(top):
            lines.append(f"  {100 * n / total:5.1f}%  {frame}")
        lines.append("")
    return "\n".join(lines)

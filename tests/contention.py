"""Busy CPU loops beside a test, to run timing-sensitive tests as a loaded machine would.

A 2-core CI machine that is busy with something else schedules the test's event loop, its
server and its client late and out of the order an idle machine gives; races that an idle
machine hides show up. Each loop is a child process that spins for at most ``max_s`` seconds
and also stops when its parent (the test run) is gone, so none outlives the run; the run
stops each one by its PID when the test ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Spins until the deadline, or until the process that started it is gone (reparented).
_SPIN = """
import os, sys, time
parent, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and os.getppid() == parent:
    for _ in range(100_000):
        pass
"""


@contextmanager
def busy_cpu(loops: int = 2, max_s: float = 3600.0) -> Iterator[list[int]]:
    """``loops`` busy processes for the duration of the block; yields their PIDs."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _SPIN, str(os.getpid()), str(max_s)]) for _ in range(loops)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)

"""The PIDs of this session's pool processes, without Ray's dashboard (the test cluster has none).

Ray names each actor's process after the actor ("ray::ServeReplica:<app>:<deployment>", with
".<method>" appended while a method runs). Only descendants of this test process count: the
cluster was started by this process (ray.init(address="local")), and other pools on the same
machine have processes with the same names.
"""

from __future__ import annotations

import os

import psutil

PREFIX = "ray::ServeReplica:embedpool:"


def pool_processes() -> dict[str, psutil.Process]:
    """Deployment name ("Router", "<model>--<variant>") -> its live replica process."""
    out: dict[str, psutil.Process] = {}
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if title.startswith(PREFIX):
            out[title[len(PREFIX) :].split(".", 1)[0].split(" ", 1)[0]] = proc
    return out


def replica_pids(deployment: str) -> list[int]:
    procs = pool_processes()
    return [procs[deployment].pid] if deployment in procs else []

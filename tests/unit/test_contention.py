"""The busy loops that run timing-sensitive tests as on a loaded machine (tests/contention.py)."""

from __future__ import annotations

import psutil
import pytest

from tests.contention import busy_cpu


def test_busy_loops_spin_for_the_block_and_are_stopped_after_it() -> None:
    with busy_cpu(2, max_s=60) as pids:
        procs = [psutil.Process(pid) for pid in pids]
        assert len(procs) == 2 and all(p.is_running() for p in procs)
        assert all(p.cpu_percent(interval=0.5) > 5 for p in procs)  # spinning, not sleeping
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)


def test_a_busy_loop_stops_by_itself_at_its_bound() -> None:
    with busy_cpu(1, max_s=0.2) as pids:
        psutil.Process(pids[0]).wait(timeout=20)


@pytest.mark.busy_cpu(1)
def test_the_marker_runs_the_test_beside_busy_loops() -> None:
    me = psutil.Process()
    spinning = [c for c in me.children() if "getppid" in " ".join(c.cmdline())]
    assert spinning  # its own loop, or the run's (--busy-cpu)

"""Autoscaling and node loss on a real multi-node Ray cluster (ray.cluster_utils.Cluster).

The scenario runs in a subprocess (tests/integration/autoscaling_scenario.py): it needs a
cluster of its own, and a process can be connected to one Ray cluster only (the session
cluster of conftest.py lives in this process). It deploys a Serve config made by
embedpool.server.serving.deploy_config, drives the pool's own gRPC port with EmbeddingClient,
and prints a JSON result; this test asserts on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCENARIO = HERE / "autoscaling_scenario.py"
TIMEOUT_S = 480  # typically ~2-3 min; the bounded waits inside add up to less than this


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    # A private temp dir: the cluster's session files, sockets and "current cluster" address
    # file stay out of /tmp/ray, which other Ray instances on the machine use. Short, for the
    # unix socket path limit.
    with tempfile.TemporaryDirectory(prefix="epas-", dir="/tmp") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update({"TMPDIR": tmp, "RAY_TMPDIR": tmp, "HF_HUB_OFFLINE": "1"})
        out = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, str(SCENARIO), "--out", str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        if not out.exists():
            output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            pytest.fail(f"the scenario wrote no result (rc={proc.returncode}):\n{output}")
        result: dict[str, Any] = json.loads(out.read_text())
    assert result["ok"], result.get("exception") or result
    timings = {k: round(v, 1) for k, v in result["timings_s"].items()}
    print(f"\nautoscaling scenario: {result['total_s']} s in all; phases (s): {timings}")
    return result


def _replicas_on(result: dict[str, Any], variant: str) -> dict[str, int]:
    placements: dict[str, int] = result["placements"][variant]
    return placements


def test_gpu_replicas_run_only_on_gpu_nodes_and_cpu_replicas_stay_off_them(scenario: dict[str, Any]) -> None:
    nodes = scenario["nodes"]
    gpu_nodes = {name for name, node in nodes.items() if node["gpus"] > 0}
    assert gpu_nodes == {"gpu"}
    gpu_replicas = _replicas_on(scenario, "gpu")
    cpu_replicas = _replicas_on(scenario, "cpu")
    assert sum(gpu_replicas.values()) >= 3, gpu_replicas  # every replica seen during the run
    assert set(gpu_replicas) <= gpu_nodes, gpu_replicas
    assert set(cpu_replicas) <= {"cpu-a", "cpu-b"}, cpu_replicas
    # The Router is pinned to the head (label selector from the generated Serve config), so
    # removing a worker never takes the pool's gRPC port away.
    assert scenario["router_nodes"] == ["head"]


def test_replicas_scale_up_to_max_under_load(scenario: dict[str, Any]) -> None:
    assert scenario["at_rest"] == {"gpu": 1, "cpu": 1}
    assert scenario["reached_max"], scenario["timeline"][-5:]
    assert scenario["peak_replicas"] == {"gpu": 3, "cpu": 3}


def test_a_node_removed_under_load_loses_no_request(scenario: dict[str, Any]) -> None:
    assert scenario["removed_node"] in ("cpu-a", "cpu-b")
    assert scenario["replicas_on_removed_node"] >= 1
    assert scenario["calls_after_removal"] > 0
    assert scenario["error_count"] == 0, scenario["errors"]
    # every answer had one vector, computed from its own text, by the variant asked for
    assert scenario["mismatch_count"] == 0, scenario["mismatches"]
    assert min(scenario["calls_ok"].values()) > 100, scenario["calls_ok"]


def test_replicas_scale_back_down_after_the_load(scenario: dict[str, Any]) -> None:
    assert scenario["scaled_down"], scenario["timeline"][-5:]
    assert scenario["final_replicas"] == {"gpu": 1, "cpu": 1}

"""The autoscaling scenario, run in its own process (tests/integration/test_autoscaling.py).

A process can be connected to one Ray cluster only, and the integration tests'
session cluster lives in the pytest process; so this script builds its own
multi-node cluster (``ray.cluster_utils.Cluster``: every "node" is a raylet on
this machine, GPUs are logical), deploys a Serve config made by
``embedpool.server.serving.deploy_config`` the way ``serve run config.yaml`` does, drives
it through the pool's own gRPC port with ``embedpool.EmbeddingClient``, and
prints one JSON object (also written to ``--out``) that the test asserts on.

Cluster (labels as in deploy/k8s/rayservice.yaml's node groups; few nodes and
CPUs, since each raylet and each prestarted worker costs this 2-core machine):
  head   num_cpus=0, label embedpool/node-pool=head: the Serve controller and the Router
  gpu    3 GPUs, 1 CPU, label embedpool/node-pool=gpu
  cpu-a  1 CPU, label embedpool/node-pool=cpu
  cpu-b  1 CPU, label embedpool/node-pool=cpu

Catalogue: one model (tests/integration/sleepy_model.py, ~20 ms per batch) with
a "gpu" variant (device cuda, 1 GPU per replica) and a "cpu" variant, each
autoscaling 1..3 with short delays.

Phases:
  1. deploy; record where replicas run.
  2. load: 8 callers per variant in closed loop; wait until both variants reach 3
     replicas (recording where every replica ran, all along).
  3. still under load: remove a CPU node that holds a "cpu" replica; keep the load
     on for a while (the client retries UNAVAILABLE and RESOURCE_EXHAUSTED).
  4. stop the load; wait until both variants are back at 1 replica.
Every call is checked: status OK, one vector, vector[0] == text_key(text),
vector[1] == the variant's device mark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.sleepy_model import DEVICE_MARK, text_key  # noqa: E402
from tests.net import free_port  # noqa: E402

APP = "embedpool"
MODEL = "sleepy"
LABEL = "embedpool/node-pool"
MAX_REPLICAS = 3
CALLERS_PER_VARIANT = 8

CATALOGUE: dict[str, Any] = {
    "default_model": MODEL,
    "router": {"num_replicas": 1, "num_cpus": 0, "max_in_flight": 2},
    "models": [
        {
            "name": MODEL,
            "source": "custom",
            "variants": [
                {
                    "name": variant,
                    "backend": "custom",
                    "device": device,
                    "class_path": "tests.integration.sleepy_model:SleepyEmbedder",
                    "class_kwargs": {"sleep_s": 0.02},
                    "default": variant == "cpu",
                    "threads": 1,
                    "batching": {"max_batch_size": 16, "max_ongoing_requests": 4},
                    "resources": {"num_cpus": 0.25, "num_gpus": 1 if device == "cuda" else 0},
                    "autoscaling": {
                        "min_replicas": 1,
                        "max_replicas": MAX_REPLICAS,
                        "target_ongoing_requests": 1,
                        "upscale_delay_s": 1,
                        "downscale_delay_s": 3,
                    },
                }
                for variant, device in (("gpu", "cuda"), ("cpu", "cpu"))
            ],
        }
    ],
}
DEPLOYMENTS = {"gpu": f"{MODEL}--gpu", "cpu": f"{MODEL}--cpu"}


class Recorder:
    """Where each deployment's replicas ran (actor id -> node id), polled from the GCS actor table."""

    def __init__(self) -> None:
        self.placements: dict[str, dict[str, str]] = {name: {} for name in DEPLOYMENTS.values()}
        self.timeline: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    @staticmethod
    def replica_nodes(deployment: str) -> set[str]:
        """Nodes of the live replicas of one deployment."""
        import ray._private.state

        return {
            (info.get("Address") or {}).get("NodeID") or ""
            for info in ray._private.state.actors().values()
            if info.get("ActorClassName") == f"ServeReplica:{APP}:{deployment}"
            and info.get("State") == "ALIVE"
        }

    def alive_replicas(self) -> dict[str, dict[str, str]]:
        import ray._private.state

        alive: dict[str, dict[str, str]] = {name: {} for name in DEPLOYMENTS.values()}
        for actor_id, info in ray._private.state.actors().items():
            class_name = info.get("ActorClassName") or ""
            for name in alive:
                if class_name == f"ServeReplica:{APP}:{name}":
                    node = (info.get("Address") or {}).get("NodeID") or ""
                    if node:
                        self.placements[name][actor_id] = node
                    if info.get("State") == "ALIVE":
                        alive[name][actor_id] = node
        return alive

    def running(self) -> dict[str, int]:
        from ray import serve

        app = serve.status().applications.get(APP)
        counts = {}
        for key, name in DEPLOYMENTS.items():
            dep = app.deployments.get(name) if app else None
            counts[key] = int(dep.replica_states.get("RUNNING", 0)) if dep else 0
        return counts

    def sample(self, phase: str) -> dict[str, int]:
        counts = self.running()
        self.alive_replicas()
        self.timeline.append({"t": round(time.monotonic() - self.t0, 2), "phase": phase, **counts})
        return counts


class AttemptCounter:
    """A client interceptor counting the status of every attempt (retries included)."""

    def __init__(self) -> None:
        import grpc

        counter = self

        class Interceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
            def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
                call = continuation(details, request)
                counter.add(call.code().name)
                return call

        self.interceptor = Interceptor()
        self.lock = threading.Lock()
        self.codes: Counter[str] = Counter()

    def add(self, code: str) -> None:
        with self.lock:
            self.codes[code] += 1


class Load:
    """Closed-loop callers through the pool's gRPC port, each call checked."""

    def __init__(self, target: str) -> None:
        import grpc

        from embedpool import EmbeddingClient

        self.attempts = AttemptCounter()
        self.channels = {variant: grpc.insecure_channel(target) for variant in DEPLOYMENTS}
        self.clients = {
            variant: EmbeddingClient(
                channel=grpc.intercept_channel(self.channels[variant], self.attempts.interceptor),
                model=MODEL,
                variant=variant,
                normalize=False,
                timeout=60,
                retries=12,
                retry_backoff=0.1,
                max_concurrency=1,
            )
            for variant in DEPLOYMENTS
        }
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok: Counter[str] = Counter()
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.threads = [
            threading.Thread(target=self._caller, args=(variant, i), daemon=True)
            for variant in DEPLOYMENTS
            for i in range(CALLERS_PER_VARIANT)
        ]

    def _caller(self, variant: str, caller: int) -> None:
        client = self.clients[variant]
        device = "cuda" if variant == "gpu" else "cpu"
        i = 0
        while not self.stop.is_set():
            text = f"{variant} caller {caller} call {i}"
            i += 1
            try:
                vectors = client.embed([text]).embeddings
            except Exception as exc:
                with self.lock:
                    self.errors.append(f"{variant}: {type(exc).__name__}: {exc}"[:300])
                continue
            problem = None
            if vectors.shape[0] != 1:
                problem = f"{len(vectors)} vectors for 1 text"
            elif vectors[0][0] != text_key(text) or vectors[0][1] != DEVICE_MARK[device]:
                problem = f"vector {vectors[0][:2].tolist()} for {text!r}"
            with self.lock:
                if problem:
                    self.mismatches.append(f"{variant}: {problem}")
                else:
                    self.ok[variant] += 1

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)
        for client in self.clients.values():
            client.close()
        for channel in self.channels.values():
            channel.close()

    def total(self) -> int:
        with self.lock:
            return sum(self.ok.values())


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def run(result: dict[str, Any]) -> None:
    import grpc
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster
    from ray.serve._private import api as serve_api
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    from embedpool.server.config.catalogue import Catalogue
    from embedpool.server.serving.app import NODE_ENV
    from embedpool.server.serving.deploy_config import DeployOptions, serve_config

    timings: dict[str, float] = {}
    result["timings_s"] = timings
    # Every raylet started here, and so every replica, inherits this: the replicas import
    # tests.integration.sleepy_model without a runtime_env (which would also keep them off the
    # prestarted workers).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    for key, value in NODE_ENV.items():  # as `embedpool serve` starts its nodes
        os.environ.setdefault(key, value)
    t = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "labels": {LABEL: "head"},
            "include_dashboard": False,
            "dashboard_agent_listen_port": None,  # any free port: 52365 may be another cluster's
        },
    )
    nodes = {
        "gpu": cluster.add_node(num_cpus=1, num_gpus=MAX_REPLICAS, labels={LABEL: "gpu"}),
        "cpu-a": cluster.add_node(num_cpus=1, labels={LABEL: "cpu"}),
        "cpu-b": cluster.add_node(num_cpus=1, labels={LABEL: "cpu"}),
    }
    result["cluster"] = cluster  # closed by main()
    ray.init(address=cluster.address, namespace="serve", logging_level="WARNING")
    node_info = {
        n["NodeID"]: {"labels": n.get("Labels", {}), "resources": n.get("Resources", {})}
        for n in ray.nodes()
        if n.get("Alive")
    }
    names = {node.node_id: name for name, node in nodes.items()}
    names[cluster.head_node.node_id] = "head"
    result["nodes"] = {
        names.get(node_id, node_id): {
            "id": node_id,
            "gpus": info["resources"].get("GPU", 0),
            "cpus": info["resources"].get("CPU", 0),
            "pool": info["labels"].get(LABEL),
        }
        for node_id, info in node_info.items()
    }
    timings["cluster_start"] = time.monotonic() - t

    # ---- 1. deploy, as `serve run config.yaml` does ----
    t = time.monotonic()
    port = free_port()
    config = serve_config(
        Catalogue.model_validate(CATALOGUE),
        DeployOptions(
            grpc_port=port,
            grpc_host="127.0.0.1",
            http_port=0,  # gRPC only: this scenario is about replicas and nodes
            ray_grpc_port=0,
            proxy_location="Disabled",
            router_selector={LABEL: "head"},
            cpu_selector={LABEL: "cpu"},
            gpu_selector={LABEL: "gpu"},
        ),
    )
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options={"host": "127.0.0.1", "port": free_port()},
        proxy_location=schema.proxy_location,
        grpc_options=gRPCOptions(**schema.grpc_options.model_dump()),
    )
    client.deploy_apps(schema)
    rec = Recorder()

    def app_running() -> bool:
        app = serve.status().applications.get(APP)
        return bool(app) and str(app.status) in ("RUNNING", "ApplicationStatus.RUNNING")

    if not wait_until(app_running, 120):
        raise RuntimeError(f"the app did not start: {serve.status()}")
    grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=30)
    timings["deploy"] = time.monotonic() - t
    result["at_rest"] = rec.sample("rest")
    result["router_nodes"] = sorted(names.get(n, n) for n in rec.replica_nodes("Router"))

    # ---- 2. load until both variants reach max_replicas ----
    load = Load(f"127.0.0.1:{port}")
    t = time.monotonic()
    load.start()
    peak = {"gpu": 0, "cpu": 0}

    def at_max() -> bool:
        counts = rec.sample("load")
        for key in peak:
            peak[key] = max(peak[key], counts[key])
        return all(counts[key] >= MAX_REPLICAS for key in DEPLOYMENTS)

    result["reached_max"] = wait_until(at_max, 150)
    timings["scale_up"] = time.monotonic() - t
    result["peak_replicas"] = dict(peak)

    # ---- 3. remove a CPU node holding a "cpu" replica, under load ----
    alive = rec.alive_replicas()
    cpu_replica_nodes = Counter(alive[DEPLOYMENTS["cpu"]].values())
    victim = max(
        (name for name in ("cpu-a", "cpu-b") if cpu_replica_nodes.get(nodes[name].node_id)),
        key=lambda name: cpu_replica_nodes[nodes[name].node_id],
        default=None,
    )
    result["removed_node"] = victim
    result["replicas_on_removed_node"] = cpu_replica_nodes.get(nodes[victim].node_id, 0) if victim else 0
    calls_before = load.total()
    result["attempt_codes_before_removal"] = dict(load.attempts.codes)
    if victim is not None:
        t_remove = time.monotonic()
        cluster.remove_node(nodes[victim])
        timings["remove_node"] = time.monotonic() - t_remove
    time.sleep(4)
    wait_until(lambda: rec.sample("after-removal")["cpu"] >= 1 and load.total() > calls_before + 50, 30)
    time.sleep(2)
    result["calls_after_removal"] = load.total() - calls_before

    # ---- 4. stop the load, wait for scale-down ----
    load.finish()
    timings["load"] = time.monotonic() - t
    result["calls_ok"] = dict(load.ok)
    result["attempt_codes"] = dict(load.attempts.codes)
    result["errors"] = load.errors[:20]
    result["error_count"] = len(load.errors)
    result["mismatches"] = load.mismatches[:20]
    result["mismatch_count"] = len(load.mismatches)
    t = time.monotonic()
    result["scaled_down"] = wait_until(
        lambda: all(n == 1 for n in rec.sample("idle").values()), 150, interval=1.0
    )
    timings["scale_down"] = time.monotonic() - t
    result["final_replicas"] = rec.running()

    # Placement of every replica seen during the run.
    placements: dict[str, dict[str, int]] = {}
    for key, name in DEPLOYMENTS.items():
        placements[key] = dict(Counter(names.get(n, n) for n in rec.placements[name].values()))
    result["placements"] = placements
    result["timeline"] = rec.timeline


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="also write the JSON result here")
    args = parser.parse_args()
    result: dict[str, Any] = {"ok": False}
    started = time.monotonic()
    try:
        run(result)
        result["ok"] = True
    except Exception:
        result["exception"] = traceback.format_exc()
    finally:
        cluster = result.pop("cluster", None)
        try:
            import ray
            from ray import serve

            if ray.is_initialized():
                serve.shutdown()
                ray.shutdown()
        except Exception:
            result.setdefault("shutdown_error", traceback.format_exc())
        if cluster is not None:
            cluster.shutdown()
        result["total_s"] = round(time.monotonic() - started, 1)
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())

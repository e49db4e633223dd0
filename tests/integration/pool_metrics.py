"""The pool's own request counter, read from Ray's Prometheus endpoint on this node.

Counts what the pool received (the Router counts each call it answers), not what a client
believes it sent. Ray reports metrics every `metrics_report_interval_ms` (1 s in the test
cluster), so a reading settles when two reports agree.
"""

from __future__ import annotations

import re
import time
import urllib.request


def metrics_url() -> str:
    import ray

    node = next(n for n in ray.nodes() if n["Alive"])
    return f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"


def embed_rpcs(model: str, variant: str, front: str = "grpc") -> int:
    """Embed calls answered OK for this model variant on this front, as last reported."""
    body = urllib.request.urlopen(metrics_url(), timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if not line.startswith("ray_embedpool_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if (
            labels.get("method"),
            labels.get("model"),
            labels.get("variant"),
            labels.get("code"),
            labels.get("front"),
        ) == ("Embed", model, variant, "OK", front):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def settled_embed_rpcs(
    model: str, variant: str, at_least: int = 0, timeout_s: float = 60, front: str = "grpc"
) -> int:
    """The count once it is at least `at_least` and two readings 3 s apart agree."""
    end = time.monotonic() + timeout_s
    last = -1
    while time.monotonic() < end:
        now = embed_rpcs(model, variant, front)
        if now == last and now >= at_least:
            return now
        last = now
        time.sleep(3)
    raise AssertionError(f"the Embed counter of {model}/{variant} did not settle at >= {at_least}: {last}")

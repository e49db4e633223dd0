"""Serve's queue-length autoscaling, counting the batches that reach replicas directly.

Batches sent over the direct channel (direct_path.py) bypass Serve's request
counters, so each replica reports them as the custom metric DIRECT_ONGOING
(ModelReplica.record_autoscaling_stats) and this policy adds them to Serve's own
count. Otherwise it is Serve's default policy: desired replicas = ongoing batches /
target_ongoing_requests; Serve applies the delays, factors and bounds around it, and
scales up from zero on the requests queued at the handle (the Router's fallback path).
"""

from __future__ import annotations

from typing import Any

DIRECT_ONGOING = "direct_ongoing"
POLICY = "embedpool.server.serving.autoscale:direct_aware_policy"


def direct_aware_policy(ctx: Any) -> tuple[float, dict[str, Any]]:
    """A ray.serve.config.AutoscalingContext -> (desired replicas, policy state)."""
    running = ctx.current_num_replicas
    if running == 0:
        return ctx.target_num_replicas, {}
    metrics = ctx.aggregated_metrics or {}
    direct = sum(metrics.get(DIRECT_ONGOING, {}).values())
    total = ctx.total_num_requests + direct
    return total / ctx.config.get_target_ongoing_requests(), {}

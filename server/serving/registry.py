"""Where each replica's direct channel listens, kept in Ray's GCS key-value store.

A replica publishes its address and a random token every HEARTBEAT_S; Routers
read the entries every POLL_S and drop entries older than MAX_AGE_S, so a replica
that died without unpublishing stops being chosen. The calls are blocking GCS
RPCs: callers run them off the event loop.
"""

from __future__ import annotations

import json
import time

from ray.experimental import internal_kv

from embedpool.server.direct.sender import Entry

NAMESPACE = "embedpool"
HEARTBEAT_S = 2.0
POLL_S = 1.0
MAX_AGE_S = 10.0


# The key names the channel's protocol: a Router lists only replicas that speak its own
# (during a rolling upgrade the others are reached through Ray's handle).
PROTOCOL = "stream1"


def _prefix(app: str) -> str:
    return f"direct/{PROTOCOL}/{app}/"


def _key(app: str, deployment: str, replica_id: str) -> str:
    return f"{_prefix(app)}{deployment}/{replica_id}"


def publish(app: str, deployment: str, replica_id: str, address: str, token: str) -> None:
    value = json.dumps({"address": address, "token": token, "published": time.time()})
    key = _key(app, deployment, replica_id)
    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=NAMESPACE)


def unpublish(app: str, deployment: str, replica_id: str) -> None:
    internal_kv._internal_kv_del(_key(app, deployment, replica_id), namespace=NAMESPACE)


def discover(app: str, max_age_s: float = MAX_AGE_S) -> list[Entry]:
    """Live entries of every deployment of the app."""
    found: list[Entry] = []
    now = time.time()
    prefix = _prefix(app)
    for raw_key in internal_kv._internal_kv_list(prefix, namespace=NAMESPACE):
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        value = internal_kv._internal_kv_get(key, namespace=NAMESPACE)
        if value is None:
            continue
        try:
            data = json.loads(value)
            deployment, replica_id = key[len(prefix) :].rsplit("/", 1)
            entry = Entry(
                deployment, replica_id, str(data["address"]), str(data["token"]), float(data["published"])
            )
        except (ValueError, KeyError, TypeError):
            continue
        if now - entry.published <= max_age_s:
            found.append(entry)
    return found

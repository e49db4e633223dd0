"""A tiny custom embedder (``backend: custom``) for the autoscaling scenario.

No weights: it loads at once, sleeps ``sleep_s`` per batch (like a small model on a
busy device) and answers vectors a caller can check per request: component 0 is
``text_key(text)``, component 1 says which device the variant was configured
for (1.0 cpu, 2.0 cuda). It never touches a GPU, so a "cuda" variant runs on Ray
nodes that only claim GPUs.
"""

from __future__ import annotations

import time
import zlib

import numpy as np

DIMENSIONS = 8
DEVICE_MARK = {"cpu": 1.0, "cuda": 2.0}


def text_key(text: str) -> float:
    """A number that identifies the text, exact in float32 (below 2**24)."""
    return float(zlib.crc32(text.encode("utf-8")) % 16_000_000)


class SleepyEmbedder:
    def __init__(self, sleep_s: float = 0.02, dimensions: int = DIMENSIONS, device: str = "cpu") -> None:
        self.sleep_s = sleep_s
        self.dimensions = dimensions
        self.max_input_tokens = 512
        self.device = device

    def embed(self, texts: list[str], input_type: str) -> np.ndarray:
        time.sleep(self.sleep_s)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        out[:, 1] = DEVICE_MARK.get(self.device, 0.0)
        for row, text in enumerate(texts):
            out[row, 0] = text_key(text)
        return out

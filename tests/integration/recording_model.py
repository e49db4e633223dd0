"""A tiny custom model for the fault and cancellation tests (catalogue: ``recording-test``).

- Vectors are a pure function of the text (seeded by its SHA-256), so a test can tell
  whether a response belongs to its request: ``reference_vector(text)`` is what the pool
  returns for ``text`` before normalization.
- Every text the model sees is appended, one JSON string per line, to a file named after
  the replica's PID in ``record_dir`` (default: ``$TMPDIR/embedpool-recording``; texts
  over 1000 characters as their SHA-256). A test that sends texts carrying a fresh UUID
  can prove that they never reached the model.
- A text ``"sleep:<seconds>"`` makes the batch that holds it take that long, to keep the
  replica busy on demand.

It loads in milliseconds and shares nothing with the other variants, so killing or
stalling it disturbs no other test.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

DIMENSIONS = 32
SLEEP_PREFIX = "sleep:"


def default_record_dir() -> Path:
    return Path(tempfile.gettempdir()) / "embedpool-recording"


def reference_vector(text: str, dimensions: int = DIMENSIONS) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)


def recorded(text: str) -> str:
    """How a text is written down: itself, or its SHA-256 when longer than 1000 characters."""
    if len(text) <= 1000:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def texts_seen(record_dir: Path | None = None) -> list[str]:
    """Every text any recording replica (of any run) wrote down."""
    seen: list[str] = []
    for path in (record_dir or default_record_dir()).glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line:
                seen.append(json.loads(line))
    return seen


class RecordingEmbedder:
    """Implements server.custom_model.CustomEmbedder."""

    def __init__(
        self, dimensions: int = DIMENSIONS, max_input_tokens: int = 512, record_dir: str | None = None
    ) -> None:
        self.dimensions = dimensions
        self.max_input_tokens = max_input_tokens
        directory = Path(record_dir) if record_dir else default_record_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.record_path = directory / f"{os.getpid()}.jsonl"

    def embed(self, texts: list[str], input_type: str) -> np.ndarray:
        with self.record_path.open("a", encoding="utf-8") as f:
            f.writelines(json.dumps(recorded(t)) + "\n" for t in texts)
        delay = sum(float(t[len(SLEEP_PREFIX) :]) for t in texts if t.startswith(SLEEP_PREFIX))
        if delay:
            time.sleep(delay)
        return np.stack([reference_vector(t, self.dimensions) for t in texts])

"""Progress reporting for ``show_progress=True``: tqdm when installed, else a stderr line."""

from __future__ import annotations

import sys
import threading
from typing import Protocol

__all__ = ["Progress", "make_progress"]


class Progress(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> object: ...


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _LineProgress:
    """A minimal fallback: rewrites one stderr line, ``Embedding: 120/1000 texts``."""

    def __init__(self, total: int, desc: str) -> None:
        self._total = total
        self._desc = desc
        self._done = 0
        self._lock = threading.Lock()
        self._write()

    def _write(self) -> None:
        sys.stderr.write(f"\r{self._desc}: {self._done}/{self._total} texts")
        sys.stderr.flush()

    def update(self, n: int) -> None:
        with self._lock:
            self._done += n
            self._write()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def make_progress(total: int, enabled: bool, desc: str = "Embedding") -> Progress:
    """A progress bar over ``total`` inputs, or one that shows nothing when not enabled."""
    if not enabled:
        return _NoProgress()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _LineProgress(total, desc)
    bar: Progress = tqdm(total=total, desc=desc, unit="text")
    return bar

"""Shared settings for the unit tests: offline hub, the 'slow' marker."""

from __future__ import annotations

import os

# The tests use local weights only (the bundled all-MiniLM-L6-v2); never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line(
        "markers", "slow: exports ONNX/OpenVINO models (once per session); deselect with -m 'not slow'"
    )

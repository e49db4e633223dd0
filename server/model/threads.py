"""Intra-op threads, set in one place for every backend.

Ray starts a replica with OMP_NUM_THREADS set from its num_cpus (1 for a fraction), and
OpenMP's thread count is per OS thread: so the budget is applied to the process at load
(`for_process`), to each thread that runs a forward pass (`for_current_thread`, also the
encode thread's initializer), and to the onnxruntime session / OpenVINO compiled model
(`session_options`, `openvino_config` at load; `rebuild_*` when the budget changes).
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)


def for_process(threads: int) -> None:
    """The budget for the whole process: OpenMP's default for new threads, and torch's."""
    os.environ["OMP_NUM_THREADS"] = str(max(1, threads))
    for_current_thread(threads)


def for_current_thread(threads: int) -> None:
    """torch's intra-op threads for the calling thread (OpenMP keeps one count per thread)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - a custom model without torch
        return
    torch.set_num_threads(max(1, threads))


def torch_threads(backend: str, threads: int) -> int:
    """torch's share of a sentence-transformers variant's budget: all of it where torch runs
    the model, one thread where ONNX Runtime or OpenVINO does and torch only runs the small
    modules after the Transformer (Pooling, Normalize). A second pool of spinning OpenMP
    threads on the same cores slowed the next forward: batch 32 ran 1.2x (OpenVINO) and
    1.3x (ONNX) faster with torch on one thread (BENCHMARKS.md). A custom class keeps the
    whole budget (CustomRunner sets it directly)."""
    return threads if backend == "torch" else 1


def session_options(threads: int) -> Any:
    """onnxruntime SessionOptions with the budget (inter-op 1: one graph runs at a time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    return options


def openvino_config(threads: int) -> dict[str, str]:
    return {"INFERENCE_NUM_THREADS": str(max(1, threads)), "PERFORMANCE_HINT": "LATENCY"}


def rebuild_onnx_session(ort_model: Any, threads: int) -> None:
    """Rebuild an optimum ORTModel's session with ``threads`` intra-op threads (best effort)."""
    session = getattr(ort_model, "session", None)
    if session is None or not hasattr(ort_model, "initialize_ort_attributes"):
        logger.info("onnx session not reachable; threads stay as loaded")
        return
    try:
        current = session.get_session_options()
        if current.intra_op_num_threads == threads:
            return
        options = session_options(threads)
        options.graph_optimization_level = current.graph_optimization_level
        import onnxruntime as ort

        new_session = ort.InferenceSession(
            session._model_path,
            sess_options=options,
            providers=session.get_providers(),
            provider_options=[session.get_provider_options().get(p, {}) for p in session.get_providers()],
        )
        ort_model.initialize_ort_attributes(new_session, getattr(ort_model, "_use_io_binding", None))
    except Exception as exc:  # pragma: no cover - depends on optimum internals
        logger.warning("could not set onnxruntime threads to %d: %s", threads, exc)


def recompile_openvino(ov_model: Any, threads: int) -> None:
    """Recompile an optimum OVModel with INFERENCE_NUM_THREADS=threads (best effort)."""
    config = getattr(ov_model, "ov_config", None)
    if config is None or not hasattr(ov_model, "compile"):
        return
    if config.get("INFERENCE_NUM_THREADS") == str(threads):
        return
    try:
        config["INFERENCE_NUM_THREADS"] = str(threads)
        ov_model.request = None
        ov_model.compile()
    except Exception as exc:  # pragma: no cover
        logger.warning("could not set OpenVINO threads to %d: %s", threads, exc)

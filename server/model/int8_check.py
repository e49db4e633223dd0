"""An int8 variant checked against torch fp32 of the same weights, once per file and CPU kind.

Int8 models are not exact, and how far they drift depends on the model, the calibration and
the CPU's kernels. So at load the pool embeds held-out texts with the int8 model and with a
torch fp32 reference, logs the min and mean cosine beside the CPU's int8 instructions (VNNI,
AMX: without them int8 may run no faster than fp32), and reports the min as
``min_cosine_to_fp32`` (GetModel). The figures are kept in the cache dir, keyed by the
weights file (size, mtime), the CPU's flags and the runtime versions, so a restart reads them
instead of loading the reference again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from embedpool.server.config.catalogue import ModelConfig, VariantConfig
from embedpool.server.model import backend_choice
from embedpool.server.model.export_cache import package_versions
from embedpool.server.model.loading import WeightsLocation

if TYPE_CHECKING:
    from embedpool.server.model.runner import ModelRunner

logger = logging.getLogger(__name__)

INT8_LABELS = ("qint8", "quint8", "int8", "int8-weights")
HELD_OUT_TEXTS = 64


def check_against_fp32(
    runner: ModelRunner,
    weights: WeightsLocation,
    model_cfg: ModelConfig,
    variant_cfg: VariantConfig,
    cache: Path,
    load_reference: Callable[[VariantConfig], ModelRunner],
) -> float:
    """The min cosine to torch fp32 on held-out texts; 0.0 when no torch reference loads here."""
    file = Path(weights.path_or_id) / weights.file_name if weights.file_name else None
    stamp = [file.stat().st_size, file.stat().st_mtime_ns] if file is not None and file.is_file() else None
    key = {
        "weights": weights.path_or_id,
        "file": weights.file_name,
        "stamp": stamp,
        "revision": model_cfg.revision,
        "features": list(backend_choice.cpu_features()),
        "versions": package_versions(),
        "texts": HELD_OUT_TEXTS,
    }
    known = backend_choice.recall(cache, model_cfg.name, "int8-check", key)
    if known is not None:
        _log(runner, known["min"], known["mean"], ", checked at an earlier start")
        return float(known["min"])
    torch_cfg = variant_cfg.model_copy(
        update={
            "backend": "torch",
            "file_name": None,
            "quantize": None,
            "calibration_file": None,
            "model_kwargs": {},
        }
    )
    try:
        reference = load_reference(torch_cfg)
    except Exception as exc:  # an int8-only directory has no torch weights to compare with
        logger.warning(
            "%s: no torch fp32 reference to check the int8 model against (%s)", runner.variant_name, exc
        )
        return 0.0
    low, mean = backend_choice.cosine_to_reference(
        runner, reference, backend_choice.held_out_texts(HELD_OUT_TEXTS)
    )
    backend_choice.remember(cache, model_cfg.name, "int8-check", key, {"min": low, "mean": mean})
    _log(runner, low, mean, "")
    return low


def _log(runner: ModelRunner, low: float, mean: float, when: str) -> None:
    logger.warning(
        "model %r variant %r (%s): cosine to torch fp32 on %d held-out texts min %.4f, mean %.4f%s; this "
        "CPU's int8 instructions: %s",
        runner.model_name,
        runner.variant_name,
        runner.description.dtype,
        HELD_OUT_TEXTS,
        low,
        mean,
        when,
        ", ".join(backend_choice.int8_instructions())
        or "none (no VNNI or AMX: int8 may run no faster than fp32 here)",
    )

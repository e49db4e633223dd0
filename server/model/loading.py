"""Loading a catalogue variant as a SentenceTransformer: where the weights are, which file, which kwargs.

- ``package:<pkg>`` sources resolve to the package's ``get_model_path()`` (or
  ``<package dir>/model``), local paths are used as they are, and anything
  else is a hub id passed straight to SentenceTransformer.
- onnx / openvino variants load the requested file from the source when it is
  there; otherwise it is exported (and quantized, with ``quantize``) once into
  the export cache (export_cache.py) and loaded from there.
- Threads: the variant's budget, through threads.py (torch, onnxruntime, OpenVINO).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedpool.server.config.catalogue import ModelConfig, VariantConfig
from embedpool.server.errors import ConfigError
from embedpool.server.model import threads as thread_settings
from embedpool.server.model.calibration import calibration_texts
from embedpool.server.model.export_cache import (
    ONNX_FP32_FILE,
    OPENVINO_FILE,
    OPENVINO_STATIC_INT8_FILE,
    ensure_export,
    export_dir,
    export_onnx,
    export_openvino,
    onnx_dynamic_int8_file_name,
    onnx_quantization_config_name,
    quantize_onnx_dynamic_int8,
)

logger = logging.getLogger(__name__)
FEW_CALIBRATION_TEXTS = 100


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """Where a model's weights are: a local directory, or a hub id."""

    location: str
    is_local: bool


@dataclass(frozen=True, slots=True)
class WeightsLocation:
    """What to hand SentenceTransformer: a directory or hub id, and the onnx/openvino file in it."""

    path_or_id: str
    file_name: str | None
    from_cache: bool


def resolve_source(source: str) -> ResolvedSource:
    """'package:<pkg>' -> its model directory; an existing directory -> itself; else a hub id."""
    if source.startswith("package:"):
        package = source[len("package:") :]
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise ConfigError(f"source {source!r}: cannot import package {package!r}: {exc}") from exc
        get_path = getattr(module, "get_model_path", None)
        if callable(get_path):
            path = Path(get_path())
        else:
            if getattr(module, "__file__", None) is None:
                raise ConfigError(f"source {source!r}: {package!r} is not a regular package")
            path = Path(module.__file__).resolve().parent / "model"  # type: ignore[arg-type]
        if not path.is_dir():
            raise ConfigError(f"source {source!r}: model directory {str(path)!r} not found")
        return ResolvedSource(str(path), True)
    path = Path(source).expanduser()
    if path.is_dir():
        return ResolvedSource(str(path.resolve()), True)
    if source.startswith(("/", "./", "../", "~")) or path.is_file():
        raise ConfigError(f"source {source!r}: no model directory there")
    return ResolvedSource(source, False)


def _has_file(source: ResolvedSource, revision: str | None, file_name: str) -> bool:
    if source.is_local:
        return (Path(source.location) / file_name).is_file()
    try:  # pragma: no cover - needs the network
        from huggingface_hub import list_repo_files

        return file_name in list_repo_files(source.location, revision=revision)
    except Exception as exc:  # pragma: no cover
        logger.info("cannot list %s on the hub (%s); exporting instead", source.location, exc)
        return False


def locate_weights(
    model_cfg: ModelConfig, variant_cfg: VariantConfig, cache_dir: Path, source: ResolvedSource
) -> WeightsLocation:
    """Find (or make, in the export cache) the weights a variant loads."""
    backend = variant_cfg.backend
    if backend == "torch":
        return WeightsLocation(source.location, None, False)
    if backend not in ("onnx", "openvino"):
        raise ConfigError(f"backend {backend!r} does not load SentenceTransformer weights")

    revision = model_cfg.revision
    wanted = variant_cfg.file_name
    if wanted is not None:
        if _has_file(source, revision, wanted):
            return WeightsLocation(source.location, wanted, False)
        if variant_cfg.quantize is None:
            raise ConfigError(
                f"model {model_cfg.name!r} variant {variant_cfg.name!r}: file_name {wanted!r} is not in "
                f"{source.location!r}; fix file_name, or remove it (or set quantize) to export one"
            )
        logger.warning(
            "%s not in %s: making one with quantize=%s", wanted, source.location, variant_cfg.quantize
        )

    source_key = {"source": source.location, "revision": revision}

    if backend == "onnx":
        fp32_in_source = next(
            (f for f in (ONNX_FP32_FILE, "model.onnx") if _has_file(source, revision, f)), None
        )
        if variant_cfg.quantize is None:
            if fp32_in_source is not None:
                return WeightsLocation(source.location, fp32_in_source, False)
            directory = export_dir(cache_dir, model_cfg.name, "onnx", None)
            file_name = ensure_export(
                directory,
                {**source_key, "backend": "onnx", "quantize": None},
                lambda tmp: export_onnx(source.location, revision, tmp),
            )
            return WeightsLocation(str(directory), file_name, True)

        # dynamic-int8: from the source's fp32 onnx file if it has one, else from the cached export.
        config_name = onnx_quantization_config_name()
        quantized_name = onnx_dynamic_int8_file_name(config_name)
        if wanted is None and _has_file(source, revision, quantized_name):
            return WeightsLocation(source.location, quantized_name, False)
        directory = export_dir(cache_dir, model_cfg.name, "onnx", variant_cfg.quantize)

        def build(tmp: Path) -> str:
            if fp32_in_source is not None and source.is_local:
                fp32_dir, fp32_file = source.location, fp32_in_source
            else:
                fp32_directory = export_dir(cache_dir, model_cfg.name, "onnx", None)
                fp32_file = ensure_export(
                    fp32_directory,
                    {**source_key, "backend": "onnx", "quantize": None},
                    lambda t: export_onnx(source.location, revision, t),
                )
                fp32_dir = str(fp32_directory)
            return quantize_onnx_dynamic_int8(fp32_dir, fp32_file, config_name, tmp)

        file_name = ensure_export(
            directory,
            {**source_key, "backend": "onnx", "quantize": variant_cfg.quantize, "config": config_name},
            build,
        )
        return WeightsLocation(str(directory), file_name, True)

    # openvino
    if variant_cfg.quantize is None and _has_file(source, revision, OPENVINO_FILE):
        return WeightsLocation(source.location, OPENVINO_FILE, False)
    if variant_cfg.quantize is None and _has_file(source, revision, "openvino_model.xml"):
        return WeightsLocation(source.location, "openvino_model.xml", False)
    if (  # the model's own static int8 file, unless the catalogue names a calibration set to make one
        variant_cfg.quantize == "static-int8"
        and wanted is None
        and variant_cfg.calibration_file is None
        and _has_file(source, revision, OPENVINO_STATIC_INT8_FILE)
    ):
        return WeightsLocation(source.location, OPENVINO_STATIC_INT8_FILE, False)
    expected: dict[str, Any] = {**source_key, "backend": "openvino", "quantize": variant_cfg.quantize}
    texts: list[str] | None = None
    entry: str | None = variant_cfg.quantize
    if variant_cfg.quantize == "static-int8":
        texts = calibration_texts(variant_cfg.calibration_file)
        if len(texts) < FEW_CALIBRATION_TEXTS:
            logger.warning(
                "calibration_file %s holds %d texts; a few hundred like the pool's traffic calibrate best "
                "(20 texts of one shape gave a min cosine to fp32 of 0.84 where 300 varied ones gave 0.994)",
                variant_cfg.calibration_file,
                len(texts),
            )
        # Another calibration set makes another model: its own cache entry, named by its texts.
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        expected.update(calibration=digest, calibration_texts=len(texts))
        if variant_cfg.calibration_file is not None:
            entry = f"static-int8-{digest[:8]}"
    directory = export_dir(cache_dir, model_cfg.name, "openvino", entry)
    file_name = ensure_export(
        directory,
        expected,
        lambda tmp: export_openvino(source.location, revision, variant_cfg.quantize, tmp, texts),
    )
    return WeightsLocation(str(directory), file_name, True)


def _dtype_kwarg() -> str:
    """transformers >= 4.56 calls it 'dtype' (and warns about 'torch_dtype')."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


# A catalogue dtype as OpenVINO's INFERENCE_PRECISION_HINT (and back, for the runner's label).
OPENVINO_PRECISION = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}


def dtype_is_openvino_precision(variant_cfg: VariantConfig) -> bool:
    """An openvino variant of the fp32 model: its dtype is the precision it runs (not a file's type)."""
    return (
        variant_cfg.backend == "openvino" and variant_cfg.file_name is None and variant_cfg.quantize is None
    )


def sentence_transformer_kwargs(
    variant_cfg: VariantConfig, weights: WeightsLocation, threads: int
) -> dict[str, Any]:
    """model_kwargs for SentenceTransformer: dtype, file, provider, threads; the variant's own win."""
    model_kwargs: dict[str, Any] = {}
    if variant_cfg.backend == "torch":
        if variant_cfg.dtype != "float32":
            import torch

            model_kwargs[_dtype_kwarg()] = getattr(torch, variant_cfg.dtype)
    elif variant_cfg.backend == "onnx":
        model_kwargs["session_options"] = thread_settings.session_options(threads)
        model_kwargs["provider"] = (
            "CUDAExecutionProvider" if variant_cfg.device == "cuda" else "CPUExecutionProvider"
        )
        model_kwargs["file_name"] = weights.file_name
    elif variant_cfg.backend == "openvino":
        model_kwargs["file_name"] = weights.file_name
        model_kwargs["ov_config"] = thread_settings.openvino_config(threads)
        if dtype_is_openvino_precision(variant_cfg):
            # The named dtype is what runs: OpenVINO would pick bf16 by itself where the CPU has it.
            model_kwargs["ov_config"]["INFERENCE_PRECISION_HINT"] = OPENVINO_PRECISION[variant_cfg.dtype]
    user = dict(variant_cfg.model_kwargs)
    if "ov_config" in user and "ov_config" in model_kwargs and isinstance(user["ov_config"], dict):
        user["ov_config"] = {**model_kwargs["ov_config"], **user["ov_config"]}
    model_kwargs.update(user)
    return model_kwargs


def load_sentence_transformer(
    model_cfg: ModelConfig, variant_cfg: VariantConfig, cache_dir: Path, threads: int
) -> tuple[Any, WeightsLocation]:
    """Load the variant's SentenceTransformer (exporting into the cache first if needed)."""
    import torch
    from sentence_transformers import SentenceTransformer

    thread_settings.for_current_thread(thread_settings.torch_threads(variant_cfg.backend, threads))
    source = resolve_source(model_cfg.source)
    weights = locate_weights(model_cfg, variant_cfg, Path(cache_dir), source)
    model_kwargs = sentence_transformer_kwargs(variant_cfg, weights, threads)
    if variant_cfg.device == "cuda" and variant_cfg.backend == "torch" and not torch.cuda.is_available():
        raise ConfigError(f"variant {variant_cfg.name!r} needs cuda, but torch sees no GPU here")
    try:
        model = SentenceTransformer(
            weights.path_or_id,
            backend=variant_cfg.backend,
            device=variant_cfg.device,
            revision=None if weights.from_cache else model_cfg.revision,
            model_kwargs=model_kwargs,
            truncate_dim=model_cfg.truncate_dim,
            trust_remote_code=False,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load model {model_cfg.name!r} variant {variant_cfg.name!r} from "
            f"{weights.path_or_id!r}: {exc}"
        ) from exc
    model.eval()
    return model, weights

"""The export cache: ONNX / OpenVINO conversions made once and reused on every later start.

Layout: ``<cache_dir>/<model name>/<backend>[-<quantize>]/`` holds a complete
sentence-transformers model directory (tokenizer, pooling, config and the
converted file) plus ``embedpool-export.json``, written last, which records
what the directory was made from. A directory without that record, or one
made from another source, revision or quantization setting, is rebuilt.

Exports run under a file lock (one exporter per directory on a host) into a
temporary directory that is renamed into place, so concurrent replicas and
interrupted exports never leave a half-written directory behind. Nothing is
ever written next to the source weights (which may be in site-packages).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from embedpool.server.errors import ConfigError

logger = logging.getLogger(__name__)

MARKER = "embedpool-export.json"
FORMAT_VERSION = 1
ONNX_FP32_FILE = "onnx/model.onnx"
OPENVINO_FILE = "openvino/openvino_model.xml"
# The name sentence-transformers' export_static_quantized_openvino_model gives its file, which
# model cards and the LlamaIndex docs load as file_name.
OPENVINO_STATIC_INT8_FILE = "openvino/openvino_model_qint8_quantized.xml"

try:  # POSIX only; elsewhere exports are not serialized between processes.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where unavailable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def onnx_quantization_config_name() -> str:
    """The best of optimum's dynamic int8 configs for this CPU: avx512_vnni > avx512 > avx2 > arm64."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64") or machine.startswith("armv8"):
        return "arm64"
    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    # avx2, or older x86 CPUs: the avx2 model still runs there (through slower kernels).
    return "avx2"


def onnx_dynamic_int8_file_name(config_name: str) -> str:
    """The file export_dynamic_quantized_onnx_model writes for a config: onnx/model_<wdtype>_<config>.onnx."""
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = getattr(AutoQuantizationConfig, config_name)(is_static=False)
    return f"onnx/model_{config.weights_dtype.name.lower()}_{config_name}.onnx"


def export_dir(cache_dir: Path, model_name: str, backend: str, quantize: str | None) -> Path:
    return Path(cache_dir) / model_name / (backend if quantize is None else f"{backend}-{quantize}")


def _read_marker(directory: Path) -> dict[str, Any] | None:
    try:
        marker: dict[str, Any] = json.loads((directory / MARKER).read_text(encoding="utf-8"))
        return marker
    except (OSError, ValueError):
        return None


def cached_file(directory: Path, expected: dict[str, Any]) -> str | None:
    """The converted file's path (relative to ``directory``) if the cache entry matches ``expected``."""
    marker = _read_marker(directory)
    if marker is None or marker.get("format") != FORMAT_VERSION:
        return None
    if any(marker.get(key) != value for key, value in expected.items()):
        return None
    file_name = marker.get("file_name")
    if not isinstance(file_name, str) or not (directory / file_name).is_file():
        return None
    return file_name


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock (a file beside it): one process on this host works on it at a time."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path = directory.parent / f".{directory.name}.lock"
    with open(lock_path, "a+") as lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def ensure_export(
    directory: Path,
    expected: dict[str, Any],
    build: Callable[[Path], str],
) -> str:
    """Return the cached file for ``expected`` in ``directory``, building it first if needed.

    ``build(tmp_dir)`` writes a complete model directory into ``tmp_dir`` and
    returns the converted file's relative path. It runs at most once per
    directory per host at a time; its result is renamed into place.
    """
    file_name = cached_file(directory, expected)
    if file_name is not None:
        return file_name
    with locked(directory):
        file_name = cached_file(directory, expected)  # another process may have built it meanwhile
        if file_name is not None:
            return file_name
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            started = time.monotonic()
            logger.warning("exporting %s into %s (once; later starts reuse it)", expected, directory)
            file_name = build(tmp)
            if not (tmp / file_name).is_file():
                raise ConfigError(f"export into {directory} did not produce {file_name}")
            marker = {
                "format": FORMAT_VERSION,
                **expected,
                "file_name": file_name,
                "created_unix": int(time.time()),
                "seconds": round(time.monotonic() - started, 2),
                "versions": package_versions(),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True), encoding="utf-8")
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.warning("export done in %.1fs: %s", time.monotonic() - started, directory / file_name)
        return file_name


def package_versions() -> dict[str, str]:
    """The installed versions of the packages an export or a backend measurement depends on."""
    from importlib import metadata

    out = {}
    for package in (
        "sentence-transformers",
        "transformers",
        "optimum",
        "optimum-onnx",
        "onnxruntime",
        "openvino",
        "optimum-intel",
        "torch",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[package] = metadata.version(package)
    return out


# -- builders -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_backend_warnings() -> Iterator[None]:
    """sentence-transformers advises saving an export next to the source weights (often site-packages);
    we save it into the cache instead, so that advice is only noise here."""
    backend_logger = logging.getLogger("sentence_transformers.backend.utils")
    level = backend_logger.level
    backend_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        backend_logger.setLevel(level)


def _load_for_export(source: str, revision: str | None, backend: str, model_kwargs: dict[str, Any]) -> Any:
    from sentence_transformers import SentenceTransformer

    with _quiet_backend_warnings():
        return SentenceTransformer(
            source,
            backend=backend,
            device="cpu",
            revision=revision,
            trust_remote_code=False,
            model_kwargs=model_kwargs,
        )


def export_onnx(source: str, revision: str | None, target: Path) -> str:
    """Export the (torch) weights at ``source`` to ONNX fp32 into ``target``."""
    model = _load_for_export(source, revision, "onnx", {"export": True, "provider": "CPUExecutionProvider"})
    model.save_pretrained(str(target))
    return ONNX_FP32_FILE


def quantize_onnx_dynamic_int8(fp32_dir: str, fp32_file: str, config_name: str, target: Path) -> str:
    """Dynamic int8 quantization of an ONNX fp32 model directory into ``target``."""
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    model = _load_for_export(
        fp32_dir, None, "onnx", {"file_name": fp32_file, "provider": "CPUExecutionProvider"}
    )
    model.save_pretrained(str(target))
    export_dynamic_quantized_onnx_model(model, config_name, str(target))
    file_name = onnx_dynamic_int8_file_name(config_name)
    # The fp32 copy save_pretrained made is not needed next to the quantized file.
    for leftover in (target / fp32_file, target / (fp32_file + "_data"), target / "onnx" / "model.onnx_data"):
        if leftover.exists() and leftover != target / file_name:
            leftover.unlink()
    return file_name


def export_openvino(
    source: str,
    revision: str | None,
    quantize: str | None,
    target: Path,
    calibration: list[str] | None = None,
) -> str:
    """Export the weights at ``source`` to OpenVINO IR (optionally quantized) into ``target``."""
    if quantize == "static-int8":
        return _static_int8_openvino(source, revision, calibration or [], target)
    model_kwargs: dict[str, Any] = {"export": True}
    if quantize == "weights-int8":
        from optimum.intel import OVWeightQuantizationConfig

        model_kwargs["quantization_config"] = OVWeightQuantizationConfig(bits=8)
    elif quantize is not None:
        raise ConfigError(f"quantize {quantize!r} is not available for openvino")
    model = _load_for_export(source, revision, "openvino", model_kwargs)
    model.save_pretrained(str(target))
    return OPENVINO_FILE


def _static_int8_openvino(source: str, revision: str | None, texts: list[str], target: Path) -> str:
    """Weights and activations in int8 (NNCF post-training quantization through optimum-intel),
    activation ranges calibrated on ``texts``; saved as OPENVINO_STATIC_INT8_FILE beside the
    tokenizer and sentence-transformers modules, so the directory loads like a model card's."""
    import nncf
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

    model = _load_for_export(source, revision, "openvino", {"export": True})
    model.save_pretrained(str(target))
    tokenizer = model.tokenizer
    max_length = int(model.max_seq_length)
    samples = [
        dict(tokenizer(text, truncation=True, max_length=max_length, return_tensors="np")) for text in texts
    ]
    quantizer = OVQuantizer.from_pretrained(model.transformers_model)
    config = OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(samples)))
    with tempfile.TemporaryDirectory(dir=target.parent) as quantized:
        quantizer.quantize(
            calibration_dataset=nncf.Dataset(samples), save_directory=quantized, ov_config=config
        )
        made = Path(quantized) / OPENVINO_FILE
        if not made.is_file():  # optimum-intel saves at the top level of the directory
            made = Path(quantized) / Path(OPENVINO_FILE).name
        final = target / OPENVINO_STATIC_INT8_FILE
        os.replace(made, final)
        os.replace(made.with_suffix(".bin"), final.with_suffix(".bin"))
    # The fp32 copy save_pretrained made is not needed next to the quantized file.
    for leftover in (target / OPENVINO_FILE, (target / OPENVINO_FILE).with_suffix(".bin")):
        leftover.unlink(missing_ok=True)
    return OPENVINO_STATIC_INT8_FILE

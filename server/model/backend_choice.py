"""`backend: auto`: the fastest exact CPU backend on this node, measured once and remembered.

Which runtime is fastest depends on the CPU: OpenVINO fp32 ran 1.45x torch on an AMD EPYC with
AVX-512 VNNI and about 1.0x on an AVX2-only one, where ONNX Runtime led; OpenVINO in bf16 ran
2.3x torch on the EPYC that has AVX-512 BF16, with a min cosine of 0.99997 to torch fp32. So the
choice is measured, never assumed. At first start every candidate installed (torch fp32, ONNX
fp32, OpenVINO held at f32, and OpenVINO bf16 where the CPU has bf16 instructions) is loaded,
its vectors are checked against torch fp32 on held-out texts of 1 to 200 words (a minimum
cosine below ``EXACT_MIN_COSINE`` rules it out: that is what "exact" means here, checked per
node, never assumed), and the rest are timed in interleaved rounds on a batch of 32 texts and
on one text. The best score wins: the geometric mean of its speed-up over torch at
batch 32 and on one text, since the pool serves both bulk calls and single queries (ONNX can
halve one-text latency while running batches no faster than torch).

The decision is written into the export cache, keyed by the model's source, the CPU (model
name, the flags that decide speed, threads) and the runtimes' versions, so later starts on the
same kind of node load the winner alone. Replicas starting together on one host measure once
(a file lock); a node with another CPU measures for itself.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedpool.server.config.catalogue import ModelConfig, VariantConfig
from embedpool.server.errors import ConfigError
from embedpool.server.model.calibration import generated_texts
from embedpool.server.model.export_cache import cpu_flags, locked, package_versions
from embedpool.server.types import EmbedItem, EmbedOutput

if TYPE_CHECKING:
    from embedpool.server.model.runner import ModelRunner

logger = logging.getLogger(__name__)

EXACT_MIN_COSINE = 0.9999
CANDIDATES: tuple[str, ...] = ("torch", "onnx", "openvino")
# OpenVINO at bf16 precision: a candidate only where the CPU computes bf16 natively (elsewhere
# OpenVINO runs it in f32, a copy of the openvino candidate).
OPENVINO_BF16 = "openvino-bf16"
BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
# The instructions that decide which runtime and which precision run fastest.
SPEED_FLAGS: tuple[str, ...] = (
    "avx2",
    "avx_vnni",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
ROUNDS = 5
BATCH = 32
# 4: ONNX Runtime and OpenVINO measured with torch on one thread beside them (threads.torch_threads).
CHOICE_FORMAT = 4
CHOICE_KIND = "backend-choice"

_PACKAGES = {
    "torch": ("torch",),
    "onnx": ("onnxruntime", "optimum.onnxruntime"),
    "openvino": ("openvino", "optimum.intel"),
}


def held_out_texts(n: int = BATCH, seed: int = 20261206) -> list[str]:
    """Texts of 6-40 words that are in no calibration set, the same on every node (the timing)."""
    return generated_texts(n, seed)


def exactness_texts() -> list[str]:
    """Held-out texts of 1 to 200 words for the cosine check: long ones gather rounding error."""
    return generated_texts(64, seed=20261207, min_words=1, max_words=200)


def cpu_features() -> tuple[str, ...]:
    """The speed-deciding instructions this CPU has (SPEED_FLAGS order)."""
    flags = cpu_flags()
    return tuple(flag for flag in SPEED_FLAGS if flag in flags)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def installed_backends() -> tuple[str, ...]:
    """The candidates whose runtime packages are importable here."""

    def present(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    return tuple(b for b in CANDIDATES if all(present(m) for m in _PACKAGES[b]))


def candidates() -> tuple[str, ...]:
    """What backend auto measures here: the installed backends, and OpenVINO bf16 on a bf16 CPU."""
    installed = installed_backends()
    bf16 = "openvino" in installed and any(f in cpu_features() for f in BF16_FLAGS)
    return installed + ((OPENVINO_BF16,) if bf16 else ())


def concrete_variant(variant_cfg: VariantConfig, backend: str) -> VariantConfig:
    """The auto variant as one candidate (same name, batching, threads and resources)."""
    if backend == OPENVINO_BF16:
        return variant_cfg.model_copy(update={"backend": "openvino", "dtype": "bfloat16"})
    return variant_cfg.model_copy(update={"backend": backend})  # dtype float32: OpenVINO held at f32


@dataclass(frozen=True, slots=True)
class Figures:
    """What one candidate did: texts/s at batch 32, one-text latency, closeness to torch fp32."""

    backend: str
    texts_per_s: float = 0.0
    one_text_ms: float = 0.0
    min_cosine: float = 0.0
    ruled_out: str = ""  # why it cannot be chosen; empty when it could
    score: float = 0.0  # geometric mean of the speed-ups over torch at batch 32 and on one text


@dataclass(frozen=True, slots=True)
class BackendChoice:
    backend: str
    figures: tuple[Figures, ...]
    cpu: str
    features: tuple[str, ...]
    threads: int
    measured_unix: int
    seconds: float
    load_average: float = 0.0  # the host's 1-minute load when measured: a busy host blurs the figures
    cached: bool = False

    @property
    def winner(self) -> Figures:
        return next(f for f in self.figures if f.backend == self.backend)

    def reason(self) -> str:
        """One line for GetModel and the log: the winner, the others' figures, the CPU."""

        def said(f: Figures) -> str:
            if f.ruled_out:
                return f"{f.backend} ruled out ({f.ruled_out})"
            return (
                f"{f.backend} {f.texts_per_s:.0f} texts/s at batch {BATCH}, {f.one_text_ms:.1f} ms for one "
                f"text, score {f.score:.2f}"
            )

        others = "; ".join(said(f) for f in self.figures if f.backend != self.backend)
        when = "cached from " if self.cached else ""
        return (
            f"fastest exact backend here: {said(self.winner)}, min cosine to torch fp32 "
            f"{self.winner.min_cosine:.5f}; {others or 'no other backend installed'}. Score: geometric mean "
            f"of the speed-ups over torch at batch {BATCH} and on one text, best of {ROUNDS} interleaved "
            f"rounds; {self.threads} threads on {self.cpu} [{', '.join(self.features) or 'no avx2'}], "
            f"load average {self.load_average:.1f}; {when}a measurement of {self.seconds:.0f} s"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackendChoice:
        figures = tuple(Figures(**f) for f in data["figures"])
        return cls(
            backend=data["backend"],
            figures=figures,
            cpu=data["cpu"],
            features=tuple(data["features"]),
            threads=int(data["threads"]),
            measured_unix=int(data["measured_unix"]),
            seconds=float(data["seconds"]),
            load_average=float(data.get("load_average", 0.0)),
            cached=True,
        )


def signature(model_cfg: ModelConfig, source: str, threads: int, candidates: Sequence[str]) -> dict[str, Any]:
    """What the decision depends on; a change in any of it measures again."""
    return {
        "format": CHOICE_FORMAT,
        "source": source,
        "revision": model_cfg.revision,
        "max_seq_length": model_cfg.max_seq_length,
        "cpu": cpu_name(),
        "features": list(cpu_features()),
        "threads": threads,
        "candidates": list(candidates),
        "versions": package_versions(),
    }


def choice_path(cache_dir: Path, model_name: str, key: dict[str, Any], kind: str = CHOICE_KIND) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / model_name / kind / f"{digest}.json"


def recall(cache_dir: Path, model_name: str, kind: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """What an earlier start wrote with ``remember`` for exactly this key, or None."""
    try:
        data = json.loads(choice_path(cache_dir, model_name, key, kind).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("value") if isinstance(data, dict) and data.get("key") == key else None
    return value if isinstance(value, dict) else None


def remember(cache_dir: Path, model_name: str, kind: str, key: dict[str, Any], value: dict[str, Any]) -> None:
    path = choice_path(cache_dir, model_name, key, kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "value": value}, indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a read-only cache costs a re-check at the next start, nothing more
        logger.warning("could not keep %s in %s: %s", kind, path.parent, exc)


def int8_instructions() -> tuple[str, ...]:
    """This CPU's int8 dot-product instructions; without them int8 may run no faster than fp32."""
    return tuple(f for f in cpu_features() if f in ("avx_vnni", "avx512_vnni", "amx_int8"))


def cosine_to_reference(runner: ModelRunner, reference: ModelRunner, texts: list[str]) -> tuple[float, float]:
    """(min, mean) cosine between two runners' vectors for the same texts."""
    cosines = np.sum(_vectors(runner, texts) * _vectors(reference, texts), axis=1)
    return float(np.min(cosines)), float(np.mean(cosines))


def _vectors(runner: ModelRunner, texts: list[str]) -> np.ndarray:
    result = runner.embed_batch([EmbedItem(texts=texts)])[0]
    if not isinstance(result, EmbedOutput):
        raise result
    return np.asarray(result.vectors, dtype=np.float32)


def _seconds(runner: ModelRunner, texts: list[str]) -> float:
    started = time.perf_counter()
    runner.embed_batch([EmbedItem(texts=texts)])
    return time.perf_counter() - started


def measure(
    candidates: Sequence[str], load: Callable[[str], ModelRunner], threads: int
) -> tuple[BackendChoice, ModelRunner]:
    """Load each candidate, rule out the inexact, time the rest side by side; the winner stays loaded."""
    started = time.monotonic()
    texts = held_out_texts()
    check_texts = exactness_texts()
    runners: dict[str, ModelRunner] = {}
    ruled_out: dict[str, str] = {}
    cosines: dict[str, float] = {}
    reference: np.ndarray | None = None
    for backend in candidates:
        try:
            runner = load(backend)
            vectors = _vectors(runner, check_texts)  # normalized: the dot product is the cosine
        except Exception as exc:  # a runtime that cannot load this model is simply not a candidate
            if backend == "torch":
                raise
            ruled_out[backend] = f"did not load: {str(exc).splitlines()[0][:200]}"
            logger.warning("backend auto: %s %s", backend, ruled_out[backend])
            continue
        if reference is None:
            reference = vectors
        cosines[backend] = float(np.min(np.sum(vectors * reference, axis=1)))
        if cosines[backend] < EXACT_MIN_COSINE:
            ruled_out[backend] = f"not exact: min cosine {cosines[backend]:.5f} to torch fp32"
            continue
        runners[backend] = runner

    batch_s: dict[str, list[float]] = {b: [] for b in runners}
    one_s: dict[str, list[float]] = {b: [] for b in runners}
    for _ in range(ROUNDS):  # interleaved, so a noisy moment costs every candidate alike
        for backend, runner in runners.items():
            batch_s[backend].append(_seconds(runner, texts))
            one_s[backend].extend(_seconds(runner, [text]) for text in texts[:3])
    best_batch = {b: min(times) for b, times in batch_s.items()}
    best_one = {b: min(times) for b, times in one_s.items()}

    def figures_of(b: str) -> Figures:
        if b in ruled_out:
            return Figures(b, ruled_out=ruled_out[b], min_cosine=cosines.get(b, 0.0))
        speedup = (best_batch["torch"] / best_batch[b]) * (best_one["torch"] / best_one[b])
        return Figures(b, len(texts) / best_batch[b], 1000 * best_one[b], cosines[b], score=speedup**0.5)

    figures = tuple(figures_of(b) for b in candidates)
    winner = max((f for f in figures if not f.ruled_out), key=lambda f: f.score)
    chosen = runners.pop(winner.backend)
    runners.clear()
    gc.collect()
    choice = BackendChoice(
        backend=winner.backend,
        figures=figures,
        cpu=cpu_name(),
        features=cpu_features(),
        threads=threads,
        measured_unix=int(time.time()),
        seconds=round(time.monotonic() - started, 1),
        load_average=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
    )
    return choice, chosen


def choose(
    model_cfg: ModelConfig,
    variant_cfg: VariantConfig,
    cache_dir: Path,
    threads: int,
    source: str,
    load: Callable[[VariantConfig], ModelRunner],
) -> tuple[BackendChoice, ModelRunner]:
    """The auto variant's backend on this node (measured once per CPU kind) and its loaded runner."""
    measured = candidates()
    if "torch" not in measured:
        raise ConfigError("backend auto needs torch (the reference every other backend is checked against)")
    key = signature(model_cfg, source, threads, measured)

    def load_backend(backend: str) -> ModelRunner:
        return load(concrete_variant(variant_cfg, backend))

    def said(choice: BackendChoice) -> BackendChoice:
        logger.warning(
            "model %r variant %r runs %s: %s",
            model_cfg.name,
            variant_cfg.name,
            choice.backend,
            choice.reason(),
        )
        return choice

    cached = _recall_choice(cache_dir, model_cfg.name, key)
    if cached is not None:
        return said(cached), load_backend(cached.backend)
    with contextlib.ExitStack() as stack:
        try:  # one replica per host measures; the others wait and read its decision
            stack.enter_context(locked(choice_path(cache_dir, model_cfg.name, key).with_suffix("")))
        except OSError as exc:  # a read-only cache dir: measure anyway, every start
            logger.warning("backend auto: cannot lock or keep its decision in %s (%s)", cache_dir, exc)
        cached = _recall_choice(cache_dir, model_cfg.name, key)
        if cached is not None:
            return said(cached), load_backend(cached.backend)
        logger.warning(
            "model %r variant %r: backend auto measures %s on this CPU (once; later starts reuse it)",
            model_cfg.name,
            variant_cfg.name,
            ", ".join(measured),
        )
        choice, runner = measure(measured, load_backend, threads)
        remember(cache_dir, model_cfg.name, CHOICE_KIND, key, choice.to_json())
        return said(choice), runner


def _recall_choice(cache_dir: Path, model_name: str, key: dict[str, Any]) -> BackendChoice | None:
    value = recall(cache_dir, model_name, CHOICE_KIND, key)
    try:
        return None if value is None else BackendChoice.from_json(value)
    except (KeyError, TypeError, ValueError):
        return None

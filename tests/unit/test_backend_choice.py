"""backend auto: the choice among exact backends, over fake runners (no model).

The real measurement with the bundled model is in test_model_runner.py.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedpool.server.config.catalogue import ModelConfig, VariantConfig
from embedpool.server.errors import ConfigError
from embedpool.server.model import backend_choice
from embedpool.server.types import EmbedItem, EmbedOutput


def unit_vector(text: str, noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    v = rng.standard_normal(16)
    if noise:
        v = v + noise * np.random.default_rng(1).standard_normal(16)
    return v / np.linalg.norm(v)


class FakeRunner:
    """Answers every text with its own unit vector after `delay_s` per call."""

    def __init__(self, backend: str, delay_s: float = 0.0, noise: float = 0.0) -> None:
        self.backend = backend
        self.delay_s = delay_s
        self.noise = noise
        self.calls = 0

    def embed_batch(self, items: Sequence[EmbedItem]) -> list[EmbedOutput]:
        self.calls += 1
        time.sleep(self.delay_s)
        return [
            EmbedOutput(np.vstack([unit_vector(t, self.noise) for t in item.texts]), 16, len(item.texts), 0)
            for item in items
        ]


def test_the_fastest_exact_backend_wins_and_the_inexact_and_broken_are_ruled_out() -> None:
    runners = {
        "torch": FakeRunner("torch", delay_s=0.03),
        "onnx": FakeRunner("onnx", delay_s=0.0, noise=0.5),  # fastest, but its vectors differ
        "openvino": FakeRunner("openvino", delay_s=0.0),
    }

    def load(backend: str) -> Any:
        return runners[backend]

    choice, runner = backend_choice.measure(("torch", "onnx", "openvino"), load, threads=2)
    assert choice.backend == "openvino" and runner is runners["openvino"]
    figures = {f.backend: f for f in choice.figures}
    assert figures["onnx"].ruled_out.startswith("not exact: min cosine")
    assert figures["openvino"].min_cosine >= backend_choice.EXACT_MIN_COSINE
    assert figures["openvino"].texts_per_s > figures["torch"].texts_per_s > 0
    assert runners["onnx"].calls == 1  # checked once, never timed
    reason = choice.reason()
    assert reason.startswith("fastest exact backend here: openvino")
    assert "onnx ruled out (not exact" in reason and "torch " in reason

    def load_broken(backend: str) -> Any:
        if backend == "openvino":
            raise RuntimeError("cannot compile\nmore detail")
        return runners[backend]

    choice, _ = backend_choice.measure(("torch", "openvino"), load_broken, threads=2)
    assert choice.backend == "torch"
    assert "openvino ruled out (did not load: cannot compile)" in choice.reason()


def test_the_choice_is_cached_per_cpu_signature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = ModelConfig(name="m", source="x")
    variant = VariantConfig(name="cpu", backend="auto")
    loaded: list[VariantConfig] = []

    def load(concrete: VariantConfig) -> Any:
        loaded.append(concrete)
        return FakeRunner(concrete.backend, delay_s=0.02 if concrete.backend == "torch" else 0.0)

    monkeypatch.setattr(backend_choice, "candidates", lambda: ("torch", "openvino"))
    choice, _ = backend_choice.choose(model, variant, tmp_path, 2, "/models/x", load)
    assert (choice.backend, choice.cached) == ("openvino", False)
    assert [c.backend for c in loaded] == ["torch", "openvino"]
    # Same name; OpenVINO's precision is the variant's dtype (float32: held at f32 when loaded).
    assert loaded[1].name == "cpu"
    assert (loaded[1].dtype, loaded[1].model_kwargs) == ("float32", {})
    files = list((tmp_path / "m" / "backend-choice").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"]["threads"] == 2

    loaded.clear()
    again, _ = backend_choice.choose(model, variant, tmp_path, 2, "/models/x", load)
    assert (again.backend, again.cached) == ("openvino", True)
    assert [c.backend for c in loaded] == ["openvino"]  # the winner alone
    assert "cached from a measurement" in again.reason()

    # Another CPU (or thread budget) measures for itself.
    monkeypatch.setattr(backend_choice, "cpu_features", lambda: ("avx2",))
    loaded.clear()
    other, _ = backend_choice.choose(model, variant, tmp_path, 2, "/models/x", load)
    assert not other.cached and len(loaded) == 2
    assert len(list((tmp_path / "m" / "backend-choice").glob("*.json"))) == 2


@pytest.mark.parametrize(
    ("installed", "features", "want"),
    [
        (
            ("torch", "onnx", "openvino"),
            ("avx2", "avx512f", "avx512_bf16"),
            ("torch", "onnx", "openvino", "openvino-bf16"),
        ),
        (("torch", "onnx", "openvino"), ("avx2", "amx_bf16"), ("torch", "onnx", "openvino", "openvino-bf16")),
        (("torch", "onnx", "openvino"), ("avx2", "avx512_vnni"), ("torch", "onnx", "openvino")),
        (("torch", "onnx"), ("avx2", "avx512_bf16"), ("torch", "onnx")),
    ],
)
def test_openvino_bf16_is_a_candidate_only_on_a_cpu_with_bf16_instructions(
    installed: tuple[str, ...],
    features: tuple[str, ...],
    want: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backend_choice, "installed_backends", lambda: installed)
    monkeypatch.setattr(backend_choice, "cpu_features", lambda: features)
    assert backend_choice.candidates() == want


def test_each_candidate_is_the_auto_variant_with_one_backend_and_precision() -> None:
    from embedpool.server.model.loading import WeightsLocation, sentence_transformer_kwargs

    auto = VariantConfig(name="cpu", backend="auto", threads=3)
    want = {
        "torch": ("torch", "float32", None),
        "onnx": ("onnx", "float32", None),
        "openvino": ("openvino", "float32", "f32"),
        "openvino-bf16": ("openvino", "bfloat16", "bf16"),
    }
    for name, (backend, dtype, hint) in want.items():
        concrete = backend_choice.concrete_variant(auto, name)
        got = (concrete.name, concrete.threads, concrete.backend, concrete.dtype)
        assert got == ("cpu", 3, backend, dtype)
        kwargs = sentence_transformer_kwargs(
            concrete, WeightsLocation("/m", None, from_cache=False), threads=2
        )
        assert kwargs.get("ov_config", {}).get("INFERENCE_PRECISION_HINT") == hint


def test_the_exactness_check_covers_short_and_long_texts() -> None:
    texts = backend_choice.exactness_texts()
    assert texts == backend_choice.exactness_texts() and len(set(texts)) == len(texts) == 64
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) <= 10 and max(lengths) >= 150  # long inputs gather the most rounding error
    assert not set(texts) & set(backend_choice.held_out_texts())


def test_auto_needs_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend_choice, "candidates", lambda: ("onnx",))
    with pytest.raises(ConfigError, match="backend auto needs torch"):
        backend_choice.choose(
            ModelConfig(name="m", source="x"), VariantConfig(backend="auto"), tmp_path, 1, "x", lambda c: None
        )


def test_held_out_texts_are_fixed() -> None:
    texts = backend_choice.held_out_texts()
    assert len(texts) == backend_choice.BATCH == len(set(texts))
    assert texts == backend_choice.held_out_texts()
    assert all(6 <= len(t.split()) <= 40 for t in texts)


def test_a_cache_dir_it_cannot_write_costs_a_measurement_per_start_not_the_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backend_choice, "candidates", lambda: ("torch", "openvino"))
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file where the cache dir should be")

    def load(concrete: VariantConfig) -> Any:
        return FakeRunner(concrete.backend, delay_s=0.02 if concrete.backend == "torch" else 0.0)

    model, variant = ModelConfig(name="m", source="x"), VariantConfig(name="cpu", backend="auto")
    for _ in range(2):
        choice, runner = backend_choice.choose(model, variant, not_a_dir, 2, "x", load)
        assert (choice.backend, choice.cached, runner.backend) == ("openvino", False, "openvino")
    assert "cannot lock or keep its decision" in caplog.text

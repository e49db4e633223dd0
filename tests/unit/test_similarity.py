"""Local similarity math: LlamaIndex's formulas, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from embedpool import SimilarityMode, similarity
from embedpool.v1 import embedding_service_pb2 as pb

RNG = np.random.default_rng(7)
PAIRS = [(RNG.standard_normal(12), RNG.standard_normal(12)) for _ in range(5)]


def test_mode_values_match_llamaindex() -> None:
    assert [m.value for m in SimilarityMode] == ["cosine", "dot_product", "euclidean"]
    assert SimilarityMode.DEFAULT is SimilarityMode.COSINE
    assert SimilarityMode("dot_product") is SimilarityMode.DOT_PRODUCT
    assert SimilarityMode.EUCLIDEAN == "euclidean"
    assert str(SimilarityMode.DEFAULT) == "cosine"


def test_mode_proto_mapping() -> None:
    pairs = {
        SimilarityMode.COSINE: pb.SIMILARITY_MODE_COSINE,
        SimilarityMode.DOT_PRODUCT: pb.SIMILARITY_MODE_DOT_PRODUCT,
        SimilarityMode.EUCLIDEAN: pb.SIMILARITY_MODE_EUCLIDEAN,
    }
    for mode, value in pairs.items():
        assert mode.to_proto() == value
        assert SimilarityMode.from_proto(value) is mode
    assert SimilarityMode.from_proto(pb.SIMILARITY_MODE_UNSPECIFIED) is SimilarityMode.COSINE
    with pytest.raises(ValueError):
        SimilarityMode.from_proto(99)
    with pytest.raises(ValueError, match="unknown similarity mode"):
        SimilarityMode.parse("manhattan")


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_modes_against_numpy(a: np.ndarray, b: np.ndarray) -> None:
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert similarity(a, b) == pytest.approx(cosine)
    assert similarity(a.tolist(), b.tolist(), SimilarityMode.COSINE) == pytest.approx(cosine)
    assert similarity(a, b, SimilarityMode.DOT_PRODUCT) == pytest.approx(np.dot(a, b))
    assert similarity(a, b, "euclidean") == pytest.approx(-np.linalg.norm(a - b))
    assert isinstance(similarity(a, b), float)


def test_identical_and_zero_vectors() -> None:
    v = [0.5, -1.0, 2.0]
    zero = [0.0, 0.0, 0.0]
    assert similarity(v, v) == pytest.approx(1.0)
    assert similarity(v, v, "euclidean") == 0.0
    assert similarity(zero, v) == 0.0  # not nan
    assert similarity(zero, zero) == 0.0
    assert similarity(zero, v, "dot_product") == 0.0
    assert similarity(zero, v, "euclidean") == pytest.approx(-np.linalg.norm(v))

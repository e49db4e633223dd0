"""Similarity scoring with LlamaIndex's ``similarity()`` math, computed locally.

A higher score is always more similar: cosine is in [-1, 1], dot product is
unbounded, and euclidean is the *negative* distance (0 for identical vectors).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from .v1 import embedding_service_pb2 as pb
from .vocabulary import SIMILARITY_MODES

__all__ = ["SimilarityMode", "similarity"]

#: A vector: a list of floats (LlamaIndex's ``Embedding``) or a 1-D numpy array.
VectorLike: TypeAlias = Sequence[float] | npt.NDArray[Any]


class SimilarityMode(str, enum.Enum):
    """The scoring function, with the values of LlamaIndex's ``SimilarityMode``.

    ``DEFAULT`` is an alias of ``COSINE`` (``SimilarityMode.DEFAULT is
    SimilarityMode.COSINE``), as in LlamaIndex.
    """

    COSINE = "cosine"
    DEFAULT = "cosine"
    DOT_PRODUCT = "dot_product"
    EUCLIDEAN = "euclidean"

    def __str__(self) -> str:
        return self.value

    def to_proto(self) -> pb.SimilarityMode:
        """The proto enum value (``SIMILARITY_MODE_*``)."""
        return _TO_PROTO[self]

    @classmethod
    def from_proto(cls, value: int) -> SimilarityMode:
        """The mode for a proto enum value; UNSPECIFIED means cosine, as the proto says."""
        if value == pb.SIMILARITY_MODE_UNSPECIFIED:
            return cls.COSINE
        try:
            return _FROM_PROTO[value]
        except KeyError:
            raise ValueError(f"unknown SimilarityMode enum value {value}") from None

    @classmethod
    def parse(cls, mode: SimilarityMode | str) -> SimilarityMode:
        """Accept a SimilarityMode or its string value ("cosine", "dot_product", "euclidean")."""
        if isinstance(mode, cls):
            return mode
        try:
            return cls(str(mode).lower())
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"unknown similarity mode {mode!r}; expected one of {choices}") from None


_TO_PROTO: dict[SimilarityMode, pb.SimilarityMode] = {
    SimilarityMode(name): number for name, number in SIMILARITY_MODES.numbers.items()
}
_FROM_PROTO: dict[int, SimilarityMode] = {int(v): k for k, v in _TO_PROTO.items()}


def similarity(
    embedding1: VectorLike,
    embedding2: VectorLike,
    mode: SimilarityMode | str = SimilarityMode.DEFAULT,
) -> float:
    """Score two vectors exactly as LlamaIndex's ``BaseEmbedding.similarity`` does.

    - cosine: ``dot(a, b) / (||a|| * ||b||)``, but 0.0 (not nan) when either norm is 0
    - dot_product: ``dot(a, b)``
    - euclidean: ``-||a - b||``
    """
    mode = SimilarityMode.parse(mode)
    a = np.asarray(embedding1)
    b = np.asarray(embedding2)
    if mode is SimilarityMode.EUCLIDEAN:
        return -float(np.linalg.norm(a - b))
    if mode is SimilarityMode.DOT_PRODUCT:
        return float(np.dot(a, b))
    product = np.dot(a, b)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0:
        return 0.0
    return float(product / norm)

"""Similarity scores of query vectors against document vectors, as a matrix.

The math is LlamaIndex's similarity(): cosine, dot product, and euclidean as the
negative distance, so a higher score is always more similar.
"""

from __future__ import annotations

import numpy as np

from embedpool.server.types import SimilarityName


def score_matrix(queries: np.ndarray, documents: np.ndarray, mode: SimilarityName) -> np.ndarray:
    """Return an (n_queries, n_documents) float32 matrix of scores.

    The math runs in float64: any finite float32 inputs give a finite cosine (float32
    norms of large vectors overflow to inf, and inf/inf is NaN), and the euclidean
    expansion keeps its precision. A dot product or distance beyond float32's range
    comes back as +-inf.
    """
    q = np.asarray(queries, dtype=np.float64)
    d = np.asarray(documents, dtype=np.float64)
    if mode == "dot_product":
        return _to_float32(q @ d.T)
    if mode == "euclidean":
        # |q - d|^2 = |q|^2 + |d|^2 - 2 q.d, clipped at 0 against rounding.
        sq = (q * q).sum(1)[:, None] + (d * d).sum(1)[None, :] - 2.0 * (q @ d.T)
        return _to_float32(-np.sqrt(np.maximum(sq, 0.0)))
    qn = np.linalg.norm(q, axis=1)[:, None]
    dn = np.linalg.norm(d, axis=1)[None, :]
    denom = qn * dn
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(denom > 0, (q @ d.T) / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(scores, -1.0, 1.0).astype(np.float32)


def _to_float32(scores: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return scores.astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices and scores of the best k columns, best first."""
    k = min(k, scores.shape[1])
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)

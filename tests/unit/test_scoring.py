from __future__ import annotations

import numpy as np

from embedpool.server.service.scoring import score_matrix, top_k


def test_scores_match_the_pairwise_math() -> None:
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    cos = score_matrix(q, d, "cosine")
    dot = score_matrix(q, d, "dot_product")
    euc = score_matrix(q, d, "euclidean")
    for i in range(3):
        for j in range(5):
            assert np.isclose(dot[i, j], q[i] @ d[j], atol=1e-4)
            assert np.isclose(cos[i, j], q[i] @ d[j] / np.linalg.norm(q[i]) / np.linalg.norm(d[j]), atol=1e-5)
            assert np.isclose(euc[i, j], -np.linalg.norm(q[i] - d[j]), atol=1e-4)


def test_zero_vectors_score_zero_under_cosine_and_top_k_ranks_best_first() -> None:
    q = np.array([[0.0, 0.0], [1.0, 0.0]])
    d = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert score_matrix(q, d, "cosine")[0].tolist() == [0.0, 0.0, 0.0]
    idx, val = top_k(score_matrix(q, d, "cosine"), 5)
    assert idx[1].tolist() == [0, 1, 2] and val.shape == (2, 3)

"""Per-item post-processing of raw model vectors: Matryoshka truncation, L2 normalization, precision.

int8/uint8 need a value range per dimension. Computing it from the batch
(sentence-transformers' default) would make a vector depend on whatever else
was in its batch, so each variant calibrates fixed ranges once at load from
a small built-in corpus (CALIBRATION_CORPUS). The ranges are derived from
the raw calibration vectors for each (dimensions, normalize) pair a request
asks for (computed on first use, then cached), so a truncated and
re-normalized vector is scaled by the ranges of such vectors, not by those
of full-size ones.
"""

from __future__ import annotations

import threading
from typing import Literal, cast

import numpy as np

from embedpool.server.errors import InvalidArgument

PRECISIONS: tuple[str, ...] = ("float32", "int8", "uint8", "binary", "ubinary")

# Varied on purpose: questions, statements, instructions, lists, code, numbers,
# names, other languages, very short and longer texts.
CALIBRATION_CORPUS: tuple[str, ...] = (
    "What is the capital of France?",
    "How do I reset my password?",
    "Why is the sky blue during the day and red at sunset?",
    "Who wrote the novel Pride and Prejudice?",
    "When did the first human land on the moon?",
    "Which programming language is best for data analysis?",
    "Can you recommend a good book about the history of Rome?",
    "How many calories are in a banana?",
    "Paris is the capital and most populous city of France.",
    "The mitochondria is the powerhouse of the cell.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The stock market fell sharply after the announcement of new tariffs.",
    "Our quarterly revenue grew by 12% compared to last year.",
    "The patient was prescribed 500 mg of amoxicillin three times a day.",
    "The defendant pleaded not guilty to all charges.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A large language model predicts the next token given the previous ones.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Preheat the oven to 180 degrees and bake for twenty-five minutes.",
    "Turn left at the second traffic light and the station is on your right.",
    "Please send me the invoice by Friday.",
    "I absolutely loved this movie, the acting was superb!",
    "Terrible service, the food was cold and the waiter was rude.",
    "The hotel room was clean but a bit small for the price.",
    "def add(a, b):\n    return a + b",
    "SELECT name, email FROM users WHERE created_at > '2024-01-01';",
    "for (int i = 0; i < n; i++) { sum += values[i]; }",
    "import numpy as np; x = np.linspace(0, 1, 100)",
    "Error: connection refused (errno 111) while connecting to port 5432",
    "HTTP/1.1 404 Not Found",
    "3.14159 2.71828 1.41421 1.61803",
    "Order #48213 shipped on 2023-07-14 via express delivery.",
    "Call +1 (555) 013-2487 between 9am and 5pm.",
    "Albert Einstein developed the theory of relativity.",
    "Marie Curie was the first woman to win a Nobel Prize.",
    "The Amazon rainforest spans nine countries in South America.",
    "Mount Everest is the highest mountain above sea level.",
    "The Great Wall of China is visible across thousands of kilometres of terrain.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.",
    "El mercado abre a las ocho de la mañana.",
    "Il tempo oggi è nuvoloso con possibilità di pioggia.",
    "東京は日本の首都です。",
    "这是一个关于机器学习的简短句子。",
    "Москва — столица России.",
    "서울은 대한민국의 수도입니다.",
    "hello",
    "yes",
    "OK thanks!",
    "lorem ipsum dolor sit amet",
    "neural networks, gradient descent, backpropagation, overfitting",
    "apples, oranges, bananas, grapes, pears",
    "Breaking: heavy snowfall closes schools across the region.",
    "The team won the championship after a dramatic penalty shootout.",
    "The new smartphone features a faster processor and a brighter display.",
    "Regular exercise reduces the risk of heart disease and improves mood.",
    "Interest rates are expected to remain unchanged this quarter.",
    "To install the package, run pip install followed by the package name.",
    "The contract may be terminated by either party with thirty days' written notice.",
    "Symptoms include fever, dry cough, fatigue and loss of taste or smell.",
    "Click the blue button in the top right corner to save your changes.",
    "The function returns None when the key is missing from the dictionary.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who told stories "
    "to every child who would listen, stories of storms and whales and distant islands.",
    "In conclusion, the results suggest that the proposed method outperforms the baseline on all "
    "three benchmarks while using half the compute, although further work is needed.",
)


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalization; a zero row stays zero (no NaN)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalized: np.ndarray = vectors / np.where(norms > 0, norms, 1.0).astype(vectors.dtype)
    return normalized


class CalibrationRanges:
    """Fixed per-dimension (min, max) ranges for int8/uint8, from raw calibration vectors."""

    def __init__(self, raw_calibration: np.ndarray) -> None:
        if raw_calibration.ndim != 2 or raw_calibration.shape[0] < 2:
            raise ValueError("calibration needs a 2-D array of at least two vectors")
        self._raw = np.asarray(raw_calibration, dtype=np.float32)
        self._cache: dict[tuple[int, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return int(self._raw.shape[1])

    def ranges(self, dimensions: int, normalize: bool) -> np.ndarray:
        """(2, dimensions) float32: min and max of the calibration vectors, as a request sees them."""
        key = (dimensions, normalize)
        ranges = self._cache.get(key)
        if ranges is None:
            vectors = self._raw[:, :dimensions]
            if normalize:
                vectors = l2_normalize(vectors)
            ranges = np.vstack((vectors.min(axis=0), vectors.max(axis=0))).astype(np.float32)
            ranges.setflags(write=False)
            with self._lock:
                self._cache[key] = ranges
        return ranges


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InvalidArgument(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")


def resolve_dimensions(requested: int, full: int) -> int:
    """0 means ``full``; more than ``full`` (or negative) is InvalidArgument naming the limit."""
    if requested == 0:
        return full
    if requested < 0:
        raise InvalidArgument(f"dimensions must be 0 (all) or positive, got {requested}")
    if requested > full:
        raise InvalidArgument(
            f"dimensions {requested} is more than this model's {full} dimensions; use at most {full} "
            "(or 0 for all)"
        )
    return requested


def postprocess(
    raw: np.ndarray,
    dimensions: int,
    normalize: bool,
    precision: str,
    calibration: CalibrationRanges | None,
) -> np.ndarray:
    """Truncate to ``dimensions``, then L2-normalize if asked, then convert to ``precision``."""
    vectors = np.asarray(raw[:, :dimensions], dtype=np.float32)
    if normalize:
        vectors = l2_normalize(vectors)
    if precision == "float32":
        return np.ascontiguousarray(vectors)
    # Imported here: sentence-transformers costs seconds of CPU to import, which every replica
    # (custom classes included) would pay at start, i.e. on every scale-up.
    from sentence_transformers import quantize_embeddings

    if precision in ("int8", "uint8"):
        if calibration is None:
            raise InvalidArgument(f"precision {precision} is not available for this model (no calibration)")
        ranges = calibration.ranges(dimensions, normalize)
        # cast: the `in` test above narrows the str to these literals, which mypy cannot see.
        return quantize_embeddings(vectors, cast(Literal["int8", "uint8"], precision), ranges=ranges)
    if precision in ("binary", "ubinary"):
        return quantize_embeddings(vectors, cast(Literal["binary", "ubinary"], precision))
    check_precision(precision)
    raise AssertionError("unreachable")

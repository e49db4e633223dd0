"""The names client and server share, each tied to its proto enum in one table.

Precision, backend, device, input type, similarity mode and truncation direction are
spelled here once. The client's options and results, the server's validation
(server/service/messages.py) and its plain types (server/types.py) all read these
tables; a unit test checks each table against the generated enum, so a value added
to the proto without a name here (or the reverse) fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, Literal, TypeVar

from .v1 import embedding_service_pb2 as pb

__all__ = [
    "BACKENDS",
    "DEVICES",
    "INPUT_TYPES",
    "PRECISIONS",
    "SIMILARITY_MODES",
    "TRUNCATION_DIRECTIONS",
    "BackendName",
    "DeviceName",
    "InputTypeName",
    "PrecisionName",
    "SimilarityName",
    "TruncationDirectionName",
    "Vocabulary",
]

#: The numeric type of returned vectors, as sentence-transformers' quantize_embeddings names them.
PrecisionName = Literal["float32", "int8", "uint8", "binary", "ubinary"]
BackendName = Literal["torch", "onnx", "openvino", "custom"]
DeviceName = Literal["cpu", "cuda"]
InputTypeName = Literal["query", "document"]
SimilarityName = Literal["cosine", "dot_product", "euclidean"]
TruncationDirectionName = Literal["right", "left"]

N = TypeVar("N", bound=str)
E = TypeVar("E", bound=int)  # the generated enum's type, e.g. pb.Precision (plain ints at runtime)


@dataclass(frozen=True)
class Vocabulary(Generic[N, E]):
    """Names <-> numbers of one proto enum. `unspecified` is what 0 (`*_UNSPECIFIED`) means:
    a name (the proto's documented default) or None (no choice: the server decides)."""

    enum: str  # the proto enum's name, e.g. "Precision"
    numbers: Mapping[N, E]
    unspecified: N | None

    @property
    def names(self) -> tuple[N, ...]:
        return tuple(self.numbers)

    @property
    def known(self) -> frozenset[int]:
        """Every number this side understands, UNSPECIFIED included."""
        return frozenset([0, *self.numbers.values()])

    def number(self, name: N | None) -> int:
        """The enum number for a name; None is UNSPECIFIED. KeyError for an unknown name."""
        return 0 if name is None else self.numbers[name]

    def name(self, number: int) -> N | None:
        """The name for an enum number (UNSPECIFIED: `unspecified`). KeyError when unknown."""
        if number == 0:
            return self.unspecified
        return self._by_number[number]

    @cached_property
    def _by_number(self) -> dict[int, N]:  # built once: name() runs for every response read
        return {v: k for k, v in self.numbers.items()}


PRECISIONS: Vocabulary[PrecisionName, pb.Precision] = Vocabulary(
    "Precision",
    {
        "float32": pb.PRECISION_FLOAT32,
        "int8": pb.PRECISION_INT8,
        "uint8": pb.PRECISION_UINT8,
        "binary": pb.PRECISION_BINARY,
        "ubinary": pb.PRECISION_UBINARY,
    },
    unspecified="float32",
)
BACKENDS: Vocabulary[BackendName, pb.Backend] = Vocabulary(
    "Backend",
    {
        "torch": pb.BACKEND_TORCH,
        "onnx": pb.BACKEND_ONNX,
        "openvino": pb.BACKEND_OPENVINO,
        "custom": pb.BACKEND_CUSTOM,
    },
    unspecified=None,
)
DEVICES: Vocabulary[DeviceName, pb.Device] = Vocabulary(
    "Device", {"cpu": pb.DEVICE_CPU, "cuda": pb.DEVICE_CUDA}, None
)
INPUT_TYPES: Vocabulary[InputTypeName, pb.InputType] = Vocabulary(
    "InputType", {"query": pb.INPUT_TYPE_QUERY, "document": pb.INPUT_TYPE_DOCUMENT}, unspecified="document"
)
SIMILARITY_MODES: Vocabulary[SimilarityName, pb.SimilarityMode] = Vocabulary(
    "SimilarityMode",
    {
        "cosine": pb.SIMILARITY_MODE_COSINE,
        "dot_product": pb.SIMILARITY_MODE_DOT_PRODUCT,
        "euclidean": pb.SIMILARITY_MODE_EUCLIDEAN,
    },
    unspecified="cosine",
)
TRUNCATION_DIRECTIONS: Vocabulary[TruncationDirectionName, pb.TruncationDirection] = Vocabulary(
    "TruncationDirection",
    {"right": pb.TRUNCATION_DIRECTION_RIGHT, "left": pb.TRUNCATION_DIRECTION_LEFT},
    unspecified="right",
)

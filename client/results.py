"""Typed results: what ``embed`` returns and how the pool describes its models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .similarity import SimilarityMode
from .v1 import embedding_service_pb2 as pb
from .vocabulary import BACKENDS, DEVICES, PrecisionName, Vocabulary

__all__ = ["EmbedResult", "ModelInfo", "ModelLimits", "PrecisionName", "VariantInfo"]


def _enum_name(vocabulary: Vocabulary[Any, Any], number: int) -> str:
    """The shared name, "" for UNSPECIFIED, the number itself from a newer server."""
    try:
        return vocabulary.name(int(number)) or ""
    except KeyError:
        return str(int(number))


@dataclass(frozen=True, eq=False)
class EmbedResult:
    """The embeddings of one ``embed`` call, in input order, with what the pool reported.

    ``embeddings`` has one row per input: float32 of shape ``(n, dimensions)``
    for ``precision="float32"``, int8/uint8 of that shape for ``"int8"`` /
    ``"uint8"``, and packed bits of shape ``(n, ceil(dimensions / 8))`` as int8
    for ``"binary"`` and uint8 for ``"ubinary"``. A call split into several
    RPCs sums ``input_tokens`` and ``truncated_inputs`` over them and reports
    the largest ``queue_ns`` and ``inference_ns``.
    """

    embeddings: npt.NDArray[Any]
    dimensions: int
    model: str
    variant: str
    precision: PrecisionName
    input_tokens: int = 0
    truncated_inputs: int = 0
    queue_ns: int = 0
    inference_ns: int = 0

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def tolist(self) -> list[list[float]]:
        """The vectors as lists of Python numbers (LlamaIndex's ``Embedding`` type)."""
        rows: list[list[float]] = self.embeddings.tolist()
        return rows


@dataclass(frozen=True)
class VariantInfo:
    """One way a model is served, for example ``onnx-int8`` on ``cpu``."""

    name: str
    backend: str  # "torch", "onnx", "openvino", "custom", or "" when not reported
    device: str  # "cpu", "cuda", or ""
    dtype: str
    dimensions: int
    is_default: bool
    # Why it runs on `backend` where the pool chose it (catalogue backend auto): the figures.
    backend_reason: str = ""
    # Lowest cosine to torch float32 on held-out texts where checked at load; 0: not checked.
    min_cosine_to_fp32: float = 0.0
    # The answering replica CPU's speed-deciding instructions (avx2, avx512_vnni, amx_int8 ...).
    cpu_features: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, msg: pb.VariantInfo) -> VariantInfo:
        return cls(
            name=msg.name,
            backend=_enum_name(BACKENDS, msg.backend),
            device=_enum_name(DEVICES, msg.device),
            dtype=msg.dtype,
            dimensions=msg.dimensions,
            is_default=msg.is_default,
            backend_reason=msg.backend_reason,
            min_cosine_to_fp32=msg.min_cosine_to_fp32,
            cpu_features=tuple(msg.cpu_features),
        )


@dataclass(frozen=True)
class ModelLimits:
    """How a client must split its batches; 0 means the pool states no limit."""

    max_inputs_per_request: int = 0
    max_message_bytes: int = 0
    max_input_tokens: int = 0

    @classmethod
    def from_proto(cls, msg: pb.Limits) -> ModelLimits:
        return cls(msg.max_inputs_per_request, msg.max_message_bytes, msg.max_input_tokens)


@dataclass(frozen=True)
class ModelInfo:
    """A model the pool serves (``ListModels`` / ``GetModel``)."""

    name: str
    source: str
    dimensions: int
    max_input_tokens: int
    prompts: Mapping[str, str] = field(default_factory=dict)
    query_prompt_name: str = ""
    document_prompt_name: str = ""
    default_similarity: SimilarityMode = SimilarityMode.COSINE
    variants: tuple[VariantInfo, ...] = ()
    limits: ModelLimits = field(default_factory=ModelLimits)
    is_default: bool = False

    @classmethod
    def from_proto(cls, msg: pb.ModelInfo) -> ModelInfo:
        try:
            default_similarity = SimilarityMode.from_proto(msg.default_similarity)
        except ValueError:
            default_similarity = SimilarityMode.COSINE
        return cls(
            name=msg.name,
            source=msg.source,
            dimensions=msg.dimensions,
            max_input_tokens=msg.max_input_tokens,
            prompts=dict(msg.prompts),
            query_prompt_name=msg.query_prompt_name,
            document_prompt_name=msg.document_prompt_name,
            default_similarity=default_similarity,
            variants=tuple(VariantInfo.from_proto(v) for v in msg.variants),
            limits=ModelLimits.from_proto(msg.limits),
            is_default=msg.is_default,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the similarity mode as its string value)."""
        data = asdict(self)
        data["default_similarity"] = self.default_similarity.value
        data["prompts"] = dict(self.prompts)
        return data


def empty_embeddings(precision: PrecisionName) -> npt.NDArray[Any]:
    """A (0, 0) array of the dtype ``precision`` returns."""
    return np.zeros((0, 0), dtype=dtype_for(precision))


def dtype_for(precision: PrecisionName) -> np.dtype[Any]:
    if precision == "float32":
        return np.dtype(np.float32)
    if precision in ("int8", "binary"):
        return np.dtype(np.int8)
    return np.dtype(np.uint8)

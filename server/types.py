"""Plain data passed between the router, the model replicas and the model layer.

No Ray or torch imports here: these cross actor boundaries (pickled) and are
used by unit tests without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from embedpool.vocabulary import BackendName, DeviceName, InputTypeName, PrecisionName, SimilarityName

__all__ = [
    "BackendName",
    "DeviceName",
    "EmbedAnswer",
    "EmbedItem",
    "EmbedOutput",
    "EmbedRequest",
    "InputType",
    "ModelChoice",
    "Precision",
    "SimilarityName",
    "VariantDescription",
    "VectorEncoding",
]

# The names the client spells too: one table per concept (embedpool.vocabulary).
InputType = InputTypeName
Precision = PrecisionName
VectorEncoding = Literal["numbers", "bytes"]


@dataclass(slots=True)
class EmbedItem:
    """One request's work for one model variant, already validated by the router."""

    texts: list[str]
    input_type: InputType = "document"
    # An explicit prompt, or the name of one of the model's prompts; None means
    # the input type's prompt. The router never sets both.
    prompt: str | None = None
    prompt_name: str | None = None
    truncate: bool = False
    truncate_left: bool = False
    normalize: bool = True
    # 0 means the variant's full (or configured truncate_dim) dimensions.
    dimensions: int = 0
    precision: Precision = "float32"
    # Wall-clock arrival at the Router (time.time_ns(): the replica may be on another node,
    # where only NTP-synced wall clocks compare), for queue timing.
    arrived_ns: int = 0
    # The W3C traceparent of the Router's hop span when tracing is on (server/tracing.py):
    # the replica's spans continue it. "" otherwise.
    trace: str = ""


@dataclass(slots=True)
class ModelChoice:
    """Which model variant a call asks for; what is left empty the catalogue decides."""

    model: str = ""
    variant: str = ""
    backend: BackendName | None = None
    device: DeviceName | None = None


@dataclass(slots=True)
class EmbedRequest:
    """One Embed call as every front hands it to the service core, before validation: the
    front has turned its wire format (protobuf, JSON) into these names, the core checks them."""

    item: EmbedItem
    choice: ModelChoice = field(default_factory=ModelChoice)
    # How the answer's vectors travel: as numbers, or as each vector's raw little-endian
    # bytes (gRPC's BYTES encoding; OpenAI's base64 is those bytes in base64).
    encoding: VectorEncoding = "numbers"


@dataclass(slots=True)
class EmbedOutput:
    """The result for one EmbedItem."""

    # (len(texts), dims) float32 for float32; int8/uint8 for quantized
    # precisions (binary ones packed: ceil(dims / 8) columns).
    vectors: np.ndarray
    # Dimensions before binary packing.
    dimensions: int
    input_tokens: int
    truncated: int
    # Written by the replica alone (serving/replica.py): nanoseconds from arrival to the start
    # of its forward pass, and the wall time of that merged pass. Chunks sent side by side
    # are merged by batching.py into the slowest chunk's times.
    queue_ns: int = 0
    inference_ns: int = 0


@dataclass(slots=True)
class EmbedAnswer:
    """What the core answers an EmbedRequest with; each front writes it in its own format."""

    output: EmbedOutput
    model: str
    variant: str
    # Router arrival to answer, for the response's timings.
    total_ns: int
    encoding: VectorEncoding = "numbers"


@dataclass(slots=True)
class VariantDescription:
    """What a loaded variant reports about itself (for ListModels and validation)."""

    dimensions: int
    max_input_tokens: int
    dtype: str
    prompts: dict[str, str] = field(default_factory=dict)
    query_prompt_name: str | None = None
    document_prompt_name: str | None = None
    similarity: SimilarityName = "cosine"
    # The runtime it runs on (an auto variant's choice), and why when it was chosen here.
    backend: str = ""
    backend_reason: str = ""
    # Lowest cosine to torch fp32 on held-out texts where it was checked at load; 0: not checked.
    min_cosine_to_fp32: float = 0.0
    # The replica CPU's speed-deciding instructions (avx2, avx512_vnni, amx_int8 ...).
    cpu_features: tuple[str, ...] = ()

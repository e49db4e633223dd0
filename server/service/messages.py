"""Between the gRPC wire (embedpool.v1 messages) and the pool's plain types.

What the wire can say and the pool cannot (an enum number proto3 lets through) is refused
here; everything else is checked on the pool's own types (service/validation.py), the same
for every front. Every refusal names the field and the limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embedpool import vocabulary as vocab
from embedpool.server.errors import InvalidArgument
from embedpool.server.service.scoring import top_k as best
from embedpool.server.types import (
    BackendName,
    DeviceName,
    EmbedAnswer,
    EmbedItem,
    EmbedOutput,
    EmbedRequest,
    InputType,
    ModelChoice,
    Precision,
    SimilarityName,
    VectorEncoding,
)
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.vocabulary import Vocabulary


# Proto enum number -> the shared name (embedpool.vocabulary); UNSPECIFIED -> its meaning.
def _by_number(vocabulary: Vocabulary[Any, Any]) -> dict[int, Any]:
    return {number: vocabulary.name(number) for number in vocabulary.known}


INPUT_TYPES: dict[int, InputType] = _by_number(vocab.INPUT_TYPES)
PRECISIONS: dict[int, Precision] = _by_number(vocab.PRECISIONS)
PRECISION_ENUM: dict[Precision, pb.Precision] = dict(vocab.PRECISIONS.numbers)
MODES: dict[int, SimilarityName] = _by_number(vocab.SIMILARITY_MODES)
MODE_ENUM: dict[SimilarityName, pb.SimilarityMode] = dict(vocab.SIMILARITY_MODES.numbers)
BACKENDS: dict[int, BackendName | None] = _by_number(vocab.BACKENDS)
BACKEND_ENUM: dict[BackendName, pb.Backend] = dict(vocab.BACKENDS.numbers)
DEVICES: dict[int, DeviceName | None] = _by_number(vocab.DEVICES)
DEVICE_ENUM: dict[DeviceName, pb.Device] = dict(vocab.DEVICES.numbers)
ENCODINGS = (pb.VECTOR_ENCODING_UNSPECIFIED, pb.VECTOR_ENCODING_NUMBERS, pb.VECTOR_ENCODING_BYTES)
TRUNCATION_DIRECTIONS = tuple(sorted(vocab.TRUNCATION_DIRECTIONS.known))


def enum_value(table: Mapping[int, object] | Sequence[int], value: int, field: str, enum: str) -> None:
    """Refuse an enum number this server does not know (proto3 enums are open)."""
    if value not in table:
        names = ", ".join(pb.DESCRIPTOR.enum_types_by_name[enum].values_by_number[v].name for v in table)
        raise InvalidArgument(f"{field}={value} is not a known {enum}; use one of {names}")


def selector(sel: pb.ModelSelector) -> ModelChoice:
    enum_value(BACKENDS, sel.backend, "model.backend", "Backend")
    enum_value(DEVICES, sel.device, "model.device", "Device")
    return ModelChoice(sel.model, sel.variant, BACKENDS[sel.backend], DEVICES[sel.device])


def model_choice(req: pb.EmbedRequest | pb.SimilarityRequest | pb.CountTokensRequest) -> ModelChoice:
    return selector(req.model) if req.HasField("model") else ModelChoice()


def embed_request(req: pb.EmbedRequest) -> EmbedRequest:
    """An EmbedRequest in the pool's own names; refuses enum numbers it does not know
    (the core validates the rest, as it does for every front)."""
    enum_value(INPUT_TYPES, req.input_type, "input_type", "InputType")
    enum_value(PRECISIONS, req.precision, "precision", "Precision")
    enum_value(ENCODINGS, req.encoding, "encoding", "VectorEncoding")
    enum_value(TRUNCATION_DIRECTIONS, req.truncation_direction, "truncation_direction", "TruncationDirection")
    item = EmbedItem(
        texts=list(req.inputs),
        input_type=INPUT_TYPES[req.input_type],
        prompt=req.prompt or None,
        prompt_name=req.prompt_name or None,
        truncate=req.truncate,
        truncate_left=req.truncation_direction == pb.TRUNCATION_DIRECTION_LEFT,
        normalize=req.normalize if req.HasField("normalize") else True,
        dimensions=req.dimensions,
        precision=PRECISIONS[req.precision],
    )
    encoding: VectorEncoding = "bytes" if req.encoding == pb.VECTOR_ENCODING_BYTES else "numbers"
    return EmbedRequest(item, model_choice(req), encoding)


def raw_rows(vectors: np.ndarray) -> list[bytes]:
    """Each row's little-endian bytes, sliced from one buffer: cheaper than per-row copies."""
    n = vectors.shape[0]
    little = vectors.astype(vectors.dtype.newbyteorder("<"), copy=False)
    buf = np.ascontiguousarray(little).tobytes()
    step = len(buf) // n if n else 0
    return [buf[i * step : (i + 1) * step] for i in range(n)]


def embeddings(vectors: np.ndarray, encoding: VectorEncoding) -> list[pb.Embedding]:
    """One Embedding per row."""
    if encoding == "bytes":
        return [pb.Embedding(data=row) for row in raw_rows(vectors)]
    if vectors.dtype == np.float32:
        return [pb.Embedding(values=row) for row in vectors.tolist()]
    return [pb.Embedding(int_values=row) for row in vectors.astype(np.int32).tolist()]


def embed_response(answer: EmbedAnswer) -> pb.EmbedResponse:
    out = answer.output
    return pb.EmbedResponse(
        embeddings=embeddings(out.vectors, answer.encoding),
        dimensions=out.dimensions,
        model=answer.model,
        variant=answer.variant,
        precision=PRECISION_ENUM[_precision_of(out)],
        usage=pb.Usage(input_tokens=out.input_tokens, truncated_inputs=out.truncated),
        timings=pb.Timings(queue_ns=out.queue_ns, inference_ns=out.inference_ns, total_ns=answer.total_ns),
    )


def _precision_of(out: EmbedOutput) -> Precision:
    packed = out.vectors.shape[1] != out.dimensions
    if out.vectors.dtype == np.int8:
        return "binary" if packed else "int8"
    if out.vectors.dtype == np.uint8:
        return "ubinary" if packed else "uint8"
    return "float32"


def vectors(msgs: Sequence[pb.Vector], field: str, max_count: int) -> np.ndarray:
    """Caller-given vectors as a matrix; refuses ragged, empty or non-finite ones, and more
    than ``max_count`` (the score matrix grows with the product of both sides)."""
    if not msgs:
        raise InvalidArgument(f"{field} is empty; send at least one vector")
    if len(msgs) > max_count:
        raise InvalidArgument(f"{field} has {len(msgs)} vectors; the limit is {max_count} per request")
    dims = len(msgs[0].values)
    if dims == 0:
        raise InvalidArgument(f"{field}[0] has no values")
    for i, m in enumerate(msgs):
        if len(m.values) != dims:
            raise InvalidArgument(
                f"{field}[{i}] has {len(m.values)} values but {field}[0] has {dims}; all vectors must match"
            )
    mat = np.array([m.values for m in msgs], dtype=np.float32)
    if not np.isfinite(mat).all():
        row = int(np.argwhere(~np.isfinite(mat))[0][0])
        raise InvalidArgument(f"{field}[{row}] has a NaN or infinite value; vectors must be finite")
    return mat


def similarity_rows(scores: np.ndarray, top_k: int) -> list[pb.SimilarityRow]:
    if top_k <= 0:
        return [pb.SimilarityRow(scores=row) for row in scores.tolist()]
    idx, val = best(scores, top_k)
    return [
        pb.SimilarityRow(ranked=[pb.ScoredDocument(index=i, score=s) for i, s in zip(ir, vr, strict=True)])
        for ir, vr in zip(idx.tolist(), val.tolist(), strict=True)
    ]

"""Between the wire (embedpool.v1 messages) and the pool's plain types.

Validation that needs no model lives here, so a bad request is refused in the
router before it costs a hop. Every refusal names the field and the limit.
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
    EmbedItem,
    EmbedOutput,
    InputType,
    Precision,
    SimilarityName,
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
BACKENDS: dict[int, str | None] = _by_number(vocab.BACKENDS)
BACKEND_ENUM: dict[BackendName, pb.Backend] = dict(vocab.BACKENDS.numbers)
DEVICES: dict[int, str | None] = _by_number(vocab.DEVICES)
DEVICE_ENUM: dict[DeviceName, pb.Device] = dict(vocab.DEVICES.numbers)
ENCODINGS = (pb.VECTOR_ENCODING_UNSPECIFIED, pb.VECTOR_ENCODING_NUMBERS, pb.VECTOR_ENCODING_BYTES)
TRUNCATION_DIRECTIONS = tuple(sorted(vocab.TRUNCATION_DIRECTIONS.known))
# Model, variant and prompt names are short; a longer one is refused before any message echoes
# it (a status message travels in a header, and gRPC clients drop headers over 8-16 KiB).
MAX_NAME_CHARS = 256


def enum_value(table: Mapping[int, object] | Sequence[int], value: int, field: str, enum: str) -> None:
    """Refuse an enum number this server does not know (proto3 enums are open)."""
    if value not in table:
        names = ", ".join(pb.DESCRIPTOR.enum_types_by_name[enum].values_by_number[v].name for v in table)
        raise InvalidArgument(f"{field}={value} is not a known {enum}; use one of {names}")


def check_name(value: str, field: str) -> None:
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{field} is {len(value)} characters long; names have at most {MAX_NAME_CHARS}")


def selector(sel: pb.ModelSelector) -> tuple[str, str, str | None, str | None]:
    check_name(sel.model, "model.model")
    check_name(sel.variant, "model.variant")
    enum_value(BACKENDS, sel.backend, "model.backend", "Backend")
    enum_value(DEVICES, sel.device, "model.device", "Device")
    return sel.model, sel.variant, BACKENDS[sel.backend], DEVICES[sel.device]


def check_texts(texts: Sequence[str], field: str, max_inputs: int, *, allow_empty_list: bool = False) -> None:
    if not texts and not allow_empty_list:
        raise InvalidArgument(f"{field} is empty; send at least one text")
    if len(texts) > max_inputs:
        raise InvalidArgument(
            f"{field} has {len(texts)} texts; the limit is {max_inputs} per request. "
            "Split the batch (the Python client does this for you)."
        )
    for i, text in enumerate(texts):
        if not text:
            raise InvalidArgument(f"{field}[{i}] is an empty string; every input must have text")


def embed_item(req: pb.EmbedRequest, max_inputs: int, arrived_ns: int) -> EmbedItem:
    """Validate an EmbedRequest's options and inputs; return the work item."""
    check_texts(req.inputs, "inputs", max_inputs)
    enum_value(INPUT_TYPES, req.input_type, "input_type", "InputType")
    enum_value(PRECISIONS, req.precision, "precision", "Precision")
    enum_value(ENCODINGS, req.encoding, "encoding", "VectorEncoding")
    enum_value(TRUNCATION_DIRECTIONS, req.truncation_direction, "truncation_direction", "TruncationDirection")
    if req.prompt and req.prompt_name:
        raise InvalidArgument("set at most one of prompt and prompt_name")
    check_name(req.prompt_name, "prompt_name")
    return EmbedItem(
        texts=list(req.inputs),
        input_type=INPUT_TYPES[req.input_type],
        prompt=req.prompt or None,
        prompt_name=req.prompt_name or None,
        truncate=req.truncate,
        truncate_left=req.truncation_direction == pb.TRUNCATION_DIRECTION_LEFT,
        normalize=req.normalize if req.HasField("normalize") else True,
        dimensions=req.dimensions,
        precision=PRECISIONS[req.precision],
        arrived_ns=arrived_ns,
    )


def check_dimensions(requested: int, available: int, field: str = "dimensions") -> None:
    if requested > available:
        raise InvalidArgument(
            f"{field}={requested} is larger than the model's {available} dimensions; "
            f"use 0 (full) or a value up to {available}"
        )


def embeddings(vectors: np.ndarray, encoding: int) -> list[pb.Embedding]:
    """One Embedding per row. Bytes are sliced from one buffer: cheaper than per-row copies."""
    n = vectors.shape[0]
    if encoding == pb.VECTOR_ENCODING_BYTES:
        little = vectors.astype(vectors.dtype.newbyteorder("<"), copy=False)
        buf = np.ascontiguousarray(little).tobytes()
        step = len(buf) // n if n else 0
        return [pb.Embedding(data=buf[i * step : (i + 1) * step]) for i in range(n)]
    if vectors.dtype == np.float32:
        return [pb.Embedding(values=row) for row in vectors.tolist()]
    return [pb.Embedding(int_values=row) for row in vectors.astype(np.int32).tolist()]


def embed_response(
    out: EmbedOutput, encoding: int, model: str, variant: str, total_ns: int
) -> pb.EmbedResponse:
    return pb.EmbedResponse(
        embeddings=embeddings(out.vectors, encoding),
        dimensions=out.dimensions,
        model=model,
        variant=variant,
        precision=PRECISION_ENUM[_precision_of(out)],
        usage=pb.Usage(input_tokens=out.input_tokens, truncated_inputs=out.truncated),
        timings=pb.Timings(queue_ns=out.queue_ns, inference_ns=out.inference_ns, total_ns=total_ns),
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

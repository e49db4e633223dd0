"""Request building, batch splitting and response parsing, shared by both clients.

Nothing here does I/O: the clients build requests here, send them their own
way (threads or asyncio), and hand the responses back here to be parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from ._options import ClientOptions
from .errors import EmbedpoolError, InvalidInputError
from .results import EmbedResult, dtype_for, empty_embeddings
from .similarity import SimilarityMode
from .v1 import embedding_service_pb2 as pb
from .vocabulary import (
    INPUT_TYPES,
    PRECISIONS,
    TRUNCATION_DIRECTIONS,
    InputTypeName,
    PrecisionName,
    TruncationDirectionName,
)

__all__ = [
    "EmbedSpec",
    "InputTypeName",
    "TruncationDirectionName",
    "check_texts",
    "ranked_rows",
    "similarity_request",
    "split",
]


def _precision_name(number: int) -> PrecisionName | None:
    try:
        return PRECISIONS.name(int(number))
    except KeyError:  # a newer server's precision
        return None


E = TypeVar("E", bound=int)


def _choice(kind: str, value: str, table: Mapping[Any, E]) -> E:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise InvalidInputError(f"{kind} must be one of {list(table)}, not {value!r}") from None


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """The texts as a list; a lone string is refused rather than split into characters."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError(f"{what} must be a sequence of strings, not a single {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(f"{what}[{i}] must be a str, not {type(text).__name__}")
    return items


def split(n: int, size: int) -> list[slice]:
    """Slices cutting ``n`` items into consecutive batches of at most ``size``."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def batch_size(options: ClientOptions, server_max_inputs: int) -> int:
    """Inputs per RPC: ``embed_batch_size``, capped by the server's limit when it gives one."""
    if server_max_inputs > 0:
        return min(options.embed_batch_size, server_max_inputs)
    return options.embed_batch_size


@dataclass(frozen=True)
class EmbedSpec:
    """The settings of one embed (or count-tokens) call: everything but the inputs."""

    selector: pb.ModelSelector
    input_type: pb.InputType
    prompt: str
    prompt_name: str
    normalize: bool
    truncate: bool
    truncation_direction: pb.TruncationDirection
    dimensions: int
    precision: PrecisionName

    @classmethod
    def resolve(
        cls,
        options: ClientOptions,
        *,
        input_type: InputTypeName = "document",
        prompt: str | None = None,
        prompt_name: str | None = None,
        normalize: bool | None = None,
        truncate: bool | None = None,
        truncation_direction: TruncationDirectionName = "right",
        dimensions: int | None = None,
        precision: PrecisionName = "float32",
    ) -> EmbedSpec:
        """Fill unset arguments from the client's settings and validate them.

        Without ``prompt`` or ``prompt_name``, the client's ``query_instruction``
        (for queries) or ``text_instruction`` (for documents) is the prompt when
        set; otherwise the model's own prompt for the input type applies.
        """
        proto_input_type = _choice("input_type", input_type, INPUT_TYPES.numbers)
        if prompt is not None and prompt_name is not None:
            raise InvalidInputError("set at most one of prompt and prompt_name")
        if prompt is None and prompt_name is None:
            prompt = options.query_instruction if input_type == "query" else options.text_instruction
        dims = options.dimensions if dimensions is None else dimensions
        if dims < 0:
            raise InvalidInputError(f"dimensions must not be negative, not {dims}")
        _choice("precision", precision, PRECISIONS.numbers)
        return cls(
            selector=options.selector(),
            input_type=proto_input_type,
            prompt=prompt or "",
            prompt_name=prompt_name or "",
            normalize=options.normalize if normalize is None else normalize,
            truncate=options.truncate if truncate is None else truncate,
            truncation_direction=_choice(
                "truncation_direction", truncation_direction, TRUNCATION_DIRECTIONS.numbers
            ),
            dimensions=dims,
            precision=precision,
        )

    def embed_request(self, inputs: Sequence[str]) -> pb.EmbedRequest:
        return pb.EmbedRequest(
            model=self.selector,
            inputs=inputs,
            input_type=self.input_type,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
            normalize=self.normalize,
            truncate=self.truncate,
            truncation_direction=self.truncation_direction,
            dimensions=self.dimensions,
            precision=PRECISIONS.numbers[self.precision],
            encoding=pb.VECTOR_ENCODING_BYTES,
        )

    def count_tokens_request(self, inputs: Sequence[str]) -> pb.CountTokensRequest:
        return pb.CountTokensRequest(
            model=self.selector,
            inputs=inputs,
            input_type=self.input_type,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
        )

    def empty_result(self) -> EmbedResult:
        return EmbedResult(
            embeddings=empty_embeddings(self.precision),
            dimensions=0,
            model=self.selector.model,
            variant=self.selector.variant,
            precision=self.precision,
        )

    def merge(self, responses: Sequence[pb.EmbedResponse], sizes: Sequence[int]) -> EmbedResult:
        """One EmbedResult from the responses of consecutive sub-batches, in input order."""
        arrays = [parse_embeddings(resp, n) for resp, n in zip(responses, sizes, strict=True)]
        first = responses[0]
        dims = {resp.dimensions for resp in responses}
        widths = {arr.shape[1] for arr in arrays}
        if len(dims) > 1 or len(widths) > 1:
            raise EmbedpoolError(
                f"sub-batches came back with different dimensions {sorted(dims)}; "
                "was the model changed during the call?"
            )
        embeddings = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return EmbedResult(
            embeddings=embeddings,
            dimensions=first.dimensions or int(embeddings.shape[1]),
            model=first.model,
            variant=first.variant,
            precision=_precision_name(first.precision) or self.precision,
            input_tokens=sum(resp.usage.input_tokens for resp in responses),
            truncated_inputs=sum(resp.usage.truncated_inputs for resp in responses),
            queue_ns=max(resp.timings.queue_ns for resp in responses),
            inference_ns=max(resp.timings.inference_ns for resp in responses),
        )


def parse_embeddings(resp: pb.EmbedResponse, expected: int) -> npt.NDArray[Any]:
    """The response's vectors as an ``(n, width)`` array (writable, native byte order).

    Reads ``Embedding.data`` (VECTOR_ENCODING_BYTES, what the client asks for)
    and falls back to ``values`` / ``int_values`` for a server that answers
    with numbers.
    """
    precision = _precision_name(resp.precision)
    if precision is None:
        raise EmbedpoolError(f"the pool answered with an unknown precision {int(resp.precision)}")
    dtype = dtype_for(precision)
    items = resp.embeddings
    if len(items) != expected:
        raise EmbedpoolError(f"the pool returned {len(items)} embeddings for {expected} inputs")
    if all(item.data for item in items):
        buf = bytearray().join(item.data for item in items)
        wire = dtype.newbyteorder("<")
        if len(buf) % (expected * wire.itemsize):
            raise EmbedpoolError(f"malformed Embedding.data: {len(buf)} bytes for {expected} vectors")
        flat = np.frombuffer(buf, dtype=wire).astype(dtype, copy=False)
    elif precision == "float32":
        flat = np.array([v for item in items for v in item.values], dtype=np.float32)
    else:
        flat = np.array([v for item in items for v in item.int_values], dtype=dtype)
    if flat.size % expected:
        raise EmbedpoolError(f"the pool returned vectors of different lengths for {expected} inputs")
    width = flat.size // expected
    if resp.dimensions:
        packed = precision in ("binary", "ubinary")
        want = (resp.dimensions + 7) // 8 if packed else resp.dimensions
        if width != want:
            raise EmbedpoolError(
                f"the pool said {resp.dimensions} dimensions but sent {width} values per vector"
            )
    return flat.reshape(expected, width)


def vectors_to_proto(vectors: Any, what: str) -> list[pb.Vector]:
    """A 2-D array-like (or a single 1-D vector) as proto Vectors."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise InvalidInputError(f"{what} must be a vector or a 2-D array of vectors, not {array.ndim}-D")
    return [pb.Vector(values=row) for row in array.tolist()]


def similarity_request(
    options: ClientOptions,
    *,
    mode: SimilarityMode | str,
    top_k: int,
    queries: Sequence[str] = (),
    documents: Sequence[str] = (),
    query_vectors: Sequence[pb.Vector] = (),
    document_vectors: Sequence[pb.Vector] = (),
) -> pb.SimilarityRequest:
    if top_k < 0:
        raise InvalidInputError(f"top_k must not be negative, not {top_k}")
    request = pb.SimilarityRequest(
        queries=queries,
        documents=documents,
        query_vectors=query_vectors,
        document_vectors=document_vectors,
        mode=SimilarityMode.parse(mode).to_proto(),
        top_k=top_k,
    )
    if queries or documents:  # the text-only fields
        request.model.CopyFrom(options.selector())
        request.truncate = options.truncate
        request.dimensions = options.dimensions
    return request


def ranked_rows(resp: pb.SimilarityResponse, n_queries: int) -> list[list[tuple[int, float]]]:
    """Per query, ``(document index, score)`` pairs, best first.

    Uses the server's ranking when it sent one (top_k > 0); otherwise ranks
    every document's score, ties by document index.
    """
    if len(resp.rows) != n_queries:
        raise EmbedpoolError(f"the pool returned {len(resp.rows)} rows for {n_queries} queries")
    rows: list[list[tuple[int, float]]] = []
    for row in resp.rows:
        if row.ranked:
            rows.append([(int(doc.index), float(doc.score)) for doc in row.ranked])
        else:
            scored = [(i, float(s)) for i, s in enumerate(row.scores)]
            scored.sort(key=lambda pair: (-pair[1], pair[0]))
            rows.append(scored)
    return rows

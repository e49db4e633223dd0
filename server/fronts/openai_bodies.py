"""OpenAI's embeddings API shapes, as pydantic models, and their mapping to the pool's types.

The request body is parsed by pydantic (strict: a number is not a string) and refused with
a message naming the field; what is left is checked by the core like every front's request.
The answer has OpenAI's fields exactly; a few extensions (input_type, normalize, truncate)
are named in the README.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedpool.server.errors import InvalidArgument
from embedpool.server.service.messages import raw_rows
from embedpool.server.types import EmbedAnswer, EmbedItem, EmbedRequest, ModelChoice, VectorEncoding

TOKEN_IDS = (
    "input is an array of token ids; this pool tokenizes for itself, so send the text "
    "(LangChain's OpenAIEmbeddings sends token ids unless check_embedding_ctx_length=False)"
)


class BadBody(InvalidArgument):
    """A body that does not parse or does not fit the schema; `param` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EmbeddingsBody(BaseModel):
    """POST /v1/embeddings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field("", description="A pool model, or 'model/variant'; empty: the default model.")
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = Field(None, description="Accepted and ignored.")
    # Extensions (OpenAI has no such fields): the model's query/document prompts, unit length,
    # cutting texts over the model's limit instead of refusing them.
    input_type: Literal["query", "document"] = "document"
    normalize: bool = True
    truncate: bool = False

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        if self.input and not isinstance(self.input[0], str):
            raise BadBody(TOKEN_IDS, "input")
        return [t for t in self.input if isinstance(t, str)]

    def request(self) -> EmbedRequest:
        model, _, variant = self.model.partition("/")
        item = EmbedItem(
            texts=self.texts(),
            input_type=self.input_type,
            truncate=self.truncate,
            normalize=self.normalize,
            dimensions=self.dimensions or 0,
        )
        encoding: VectorEncoding = "bytes" if self.encoding_format == "base64" else "numbers"
        return EmbedRequest(item, ModelChoice(model, variant), encoding)


_EXPECTED = {
    "model": "a string",
    "encoding_format": "'float' or 'base64'",
    "dimensions": "a whole number of at least 1",
    "input_type": "'query' or 'document'",
    "normalize": "true or false",
    "truncate": "true or false",
    "user": "a string",
}


def parse_embeddings(body: bytes) -> EmbeddingsBody:
    """The body as an EmbeddingsBody, or a BadBody that says what is wrong and where."""
    try:
        return EmbeddingsBody.model_validate_json(body)
    except ValidationError as exc:
        raise refusal(exc) from None


def refusal(exc: ValidationError) -> BadBody:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else None
    kind = first["type"]
    if kind == "json_invalid":
        return BadBody(f"the body is not valid JSON: {first['ctx']['error']}")
    if field is None:
        return BadBody("the body must be a JSON object with 'model' and 'input'")
    if kind == "missing":
        return BadBody(f"{field} is required", field)
    if kind == "extra_forbidden":
        known = ", ".join(EmbeddingsBody.model_fields)
        return BadBody(f"unknown field {field!r}; the fields are {known}", field)
    if field == "input":
        return BadBody(_input_message(errors), field)
    if kind.endswith("_type") or kind == "literal_error":
        return BadBody(f"{field} must be {_EXPECTED.get(field, first['msg'])}", field)
    return BadBody(f"{field}: {first['msg']}", field)


def _input_message(errors: list[Any]) -> str:
    # A union reports one error per member; an element's own error (input[3] is a number
    # in an array of strings) is the one worth naming.
    for err in errors:
        loc = err["loc"]
        if len(loc) == 3 and loc[1] == "list[str]" and isinstance(loc[2], int):
            return f"input[{loc[2]}] must be a string; input is a string or an array of strings"
    return "input must be a string or an array of strings"


def embeddings_json(answer: EmbedAnswer, asked_model: str, rows_per_piece: int = 128) -> Iterator[bytes]:
    """OpenAI's list of embeddings as JSON, in pieces of ``rows_per_piece`` rows, so that the
    front can let its event loop run between them (2048 float vectors are ~16 MB of JSON and
    a quarter second of encoding). base64 is each vector's little-endian float32 bytes."""
    vectors = answer.output.vectors
    if vectors.dtype.kind != "f":
        raise InvalidArgument("only float32 vectors are served over HTTP")
    yield b'{"object":"list","data":['
    for start in range(0, vectors.shape[0], rows_per_piece):
        part = vectors[start : start + rows_per_piece]
        rows: list[Any]
        if answer.encoding == "bytes":
            rows = [base64.b64encode(row).decode("ascii") for row in raw_rows(part)]
        else:
            rows = part.tolist()
        entries = [
            {"object": "embedding", "index": start + i, "embedding": row} for i, row in enumerate(rows)
        ]
        piece = json.dumps(entries, separators=(",", ":"), allow_nan=False)[1:-1].encode()
        yield piece if start == 0 else b"," + piece
    tokens = answer.output.input_tokens
    tail = {"model": asked_model or answer.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    yield b"]," + json.dumps(tail, separators=(",", ":")).encode()[1:]


def model_list(names: list[str]) -> dict[str, Any]:
    """GET /v1/models in OpenAI's shape."""
    return {"object": "list", "data": [model_entry(name) for name in names]}


def model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "embedpool"}

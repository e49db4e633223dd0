"""The checks every request passes, whatever front it came through.

They read the pool's own types (`embedpool.server.types`), never a wire format: a front
converts its bytes or JSON first, and what it cannot convert (an enum number it does not
know, a JSON number where a string belongs) it refuses itself. Every refusal names the
field and the limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from embedpool.server.errors import InvalidArgument
from embedpool.server.types import EmbedItem, ModelChoice

# Model, variant and prompt names are short; a longer one is refused before any message echoes
# it (a status message travels in a header, and gRPC clients drop headers over 8-16 KiB).
MAX_NAME_CHARS = 256


def check_name(value: str, field: str) -> None:
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{field} is {len(value)} characters long; names have at most {MAX_NAME_CHARS}")


def check_choice(choice: ModelChoice) -> None:
    check_name(choice.model, "model.model")
    check_name(choice.variant, "model.variant")


def check_texts(texts: Sequence[str], field: str, max_inputs: int) -> None:
    if not texts:
        raise InvalidArgument(f"{field} is empty; send at least one text")
    if len(texts) > max_inputs:
        raise InvalidArgument(
            f"{field} has {len(texts)} texts; the limit is {max_inputs} per request. "
            "Split the batch (the Python client does this for you)."
        )
    for i, text in enumerate(texts):
        if not text:
            raise InvalidArgument(f"{field}[{i}] is an empty string; every input must have text")


def check_embed(item: EmbedItem, max_inputs: int) -> None:
    """An Embed request's inputs and options (the model's own limits are checked after resolution)."""
    check_texts(item.texts, "inputs", max_inputs)
    if item.prompt and item.prompt_name:
        raise InvalidArgument("set at most one of prompt and prompt_name")
    check_name(item.prompt_name or "", "prompt_name")


def check_dimensions(requested: int, available: int, field: str = "dimensions") -> None:
    if requested < 0:
        raise InvalidArgument(f"{field}={requested} is negative; use 0 (full) or a value up to {available}")
    if requested > available:
        raise InvalidArgument(
            f"{field}={requested} is larger than the model's {available} dimensions; "
            f"use 0 (full) or a value up to {available}"
        )

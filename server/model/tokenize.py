"""Tokenization for the model layer: exact token counts, truncation, padding, forward planning.

Each text is tokenized once, untruncated, with special tokens. That gives the
exact count (for usage, for CountTokens and for refusing over-long inputs
when truncate is off) at no extra cost: fast (Rust) tokenizers tokenize the
whole text even when asked to truncate. Truncation then drops content tokens
and keeps the special tokens, which is what the tokenizer's own
``truncation=True`` does, so the ids are the same as sentence-transformers'
(see tests). Padding is done in numpy, which is cheaper than asking the
tokenizer for padded tensors.

The plain ``len(text) + 2 <= max_length`` shortcut was rejected: it does not
hold for every tokenizer (BERT's uncased normalizer splits one Hangul
syllable into up to three jamo, and byte-level BPE can spend several tokens on
one character), and the untruncated tokenization costs nothing extra.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

TruncationSide = Literal["right", "left"]

# Per-forward cost in padded-token equivalents, used to decide when splitting a
# batch by length pays off. Measured for MiniLM on a 2-core CPU: ~8 ms fixed
# cost per forward, ~0.2 ms per padded token; doubled as a safety margin.
CPU_FORWARD_OVERHEAD_TOKENS = 96
# On a GPU tokens are nearly free and each launch costs; split only for big wins.
GPU_FORWARD_OVERHEAD_TOKENS = 4096


@dataclass(frozen=True, slots=True)
class TokenLayout:
    """How a tokenizer frames one sequence: n_prefix special tokens, the content, n_suffix."""

    n_prefix: int
    n_suffix: int

    @property
    def n_special(self) -> int:
        return self.n_prefix + self.n_suffix


def detect_layout(tokenizer: Any) -> TokenLayout | None:
    """The tokenizer's framing of a single sequence, or None if it is not a simple frame.

    Simple means: special tokens only at the ends, no content token marked
    special, token type ids all zero, and offsets available (a fast tokenizer).
    Anything else uses sentence-transformers' own preprocessing.
    """
    if not getattr(tokenizer, "is_fast", False):
        return None
    try:
        probe = tokenizer(
            ["hello world, this is a probe", ""],
            add_special_tokens=True,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
            verbose=False,
        )
    except Exception:
        return None
    mask = list(probe["special_tokens_mask"][0])
    n_prefix = 0
    while n_prefix < len(mask) and mask[n_prefix]:
        n_prefix += 1
    n_suffix = 0
    while n_suffix < len(mask) - n_prefix and mask[len(mask) - 1 - n_suffix]:
        n_suffix += 1
    if any(mask[n_prefix : len(mask) - n_suffix]) or n_prefix + n_suffix == len(mask):
        return None
    if len(probe["input_ids"][1]) != n_prefix + n_suffix:
        return None
    type_ids = probe.get("token_type_ids")
    if type_ids is not None and any(any(row) for row in type_ids):
        return None
    return TokenLayout(n_prefix, n_suffix)


class FastEncoder:
    """Tokenize, count, truncate and pad for one fast tokenizer with a simple layout."""

    def __init__(self, tokenizer: Any, layout: TokenLayout, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.layout = layout
        self.max_length = max_length
        pad_id = tokenizer.pad_token_id
        self.pad_id = int(pad_id) if pad_id is not None else 0
        self.pad_left = getattr(tokenizer, "padding_side", "right") == "left"
        self.with_token_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        special = getattr(tokenizer, "all_special_ids", None) or []
        self._special_ids = set(int(i) for i in special)
        self._prompt_lengths: dict[str, int] = {}
        # Batches on two streams tokenize from two threads: a fast tokenizer is not to be
        # called from two at once (its Rust state is borrowed per call).
        self._calling = threading.Lock()

    # -- tokenizing -----------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Untruncated ids with special tokens, one list per text."""
        if not texts:
            return []
        with self._calling:
            encoded = self.tokenizer(
                list(texts),
                add_special_tokens=True,
                truncation=False,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )
        ids: list[list[int]] = encoded["input_ids"]
        return ids

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tokenize(texts)]

    def prompt_length(self, prompt: str) -> int:
        """Tokens a prompt takes at the start of a sequence (prefix specials included), as
        sentence-transformers computes it for pooling that excludes the prompt."""
        length = self._prompt_lengths.get(prompt)
        if length is None:
            ids = self.tokenize([prompt])[0]
            length = len(ids) - (1 if ids and ids[-1] in self._special_ids else 0)
            self._prompt_lengths[prompt] = length
        return length

    # -- truncating -----------------------------------------------------------------------------

    def truncate_right(self, ids: list[int]) -> list[int]:
        """Keep the start of the content (as tokenizer truncation='longest_first' does)."""
        limit = self.max_length
        if len(ids) <= limit:
            return ids
        n_suffix = self.layout.n_suffix
        if n_suffix == 0:
            return ids[:limit]
        if limit <= self.layout.n_special:
            return ids[: self.layout.n_prefix] + ids[-n_suffix:]
        return ids[: limit - n_suffix] + ids[-n_suffix:]

    def truncate_left(self, text: str, prompt_chars: int) -> list[int]:
        """Keep the end of the input, and the prompt (the first ``prompt_chars`` characters)."""
        limit = self.max_length
        with self._calling:
            encoded = self.tokenizer(
                text,
                add_special_tokens=True,
                truncation=False,
                return_offsets_mapping=True,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )
        ids: list[int] = encoded["input_ids"]
        if len(ids) <= limit:
            return ids
        offsets = encoded["offset_mapping"]
        n_prefix, n_suffix = self.layout.n_prefix, self.layout.n_suffix
        end = len(ids) - n_suffix
        n_prompt = 0
        while n_prefix + n_prompt < end and offsets[n_prefix + n_prompt][0] < prompt_chars:
            n_prompt += 1
        keep = limit - self.layout.n_special - n_prompt
        if keep <= 0:
            # The prompt alone fills the window: nothing of the input would remain.
            return self.truncate_right(ids)
        head = ids[: n_prefix + n_prompt]
        tail = ids[end:] if n_suffix else []
        return head + ids[end - keep : end] + tail

    # -- padding --------------------------------------------------------------------------------

    def pad(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        """Padded int64 arrays: input_ids, attention_mask (and token_type_ids if the model takes them)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max()) if len(rows) else 0
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        if self.pad_left:
            for i, row in enumerate(rows):
                input_ids[i, width - len(row) :] = row
            attention = (np.arange(width)[None, :] >= (width - lengths)[:, None]).astype(np.int64)
        else:
            for i, row in enumerate(rows):
                input_ids[i, : len(row)] = row
            attention = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        out = {"input_ids": input_ids, "attention_mask": attention}
        if self.with_token_type_ids:
            out["token_type_ids"] = np.zeros_like(input_ids)
        return out


def plan_chunks(lengths: Sequence[int], token_cap: int, overhead_tokens: int) -> list[list[int]]:
    """Split rows into forward passes: indices per pass, longest rows first.

    One pass holds everything unless splitting pays: rows are sorted by
    length, and a new pass starts when the current one would exceed
    ``token_cap`` padded tokens (rows x longest row; a pass always takes at
    least one row), or when padding every remaining row up to the current
    pass's longest row would waste more than ``overhead_tokens`` (the cost of
    one more forward, in padded-token equivalents). Similar lengths therefore
    run as one pass; a few long texts among many short ones get their own.
    """
    n = len(lengths)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    current = [order[0]]
    head = lengths[order[0]]
    for position in range(1, n):
        index = order[position]
        length = lengths[index]
        remaining = n - position
        if (len(current) + 1) * head > token_cap or remaining * (head - length) > overhead_tokens:
            chunks.append(current)
            current = [index]
            head = length
        else:
            current.append(index)
    chunks.append(current)
    return chunks


def unique_rows(keys: Sequence[Hashable]) -> tuple[list[int], list[int]]:
    """(first index of each distinct key, position of each key among them).

    Identical inputs of one batch (a call that repeats a query, callers merged
    into one batch asking for the same text) then run through the model once;
    ``out = vectors_of_firsts[inverse]`` gives every row its vector back.
    """
    position: dict[Hashable, int] = {}
    firsts: list[int] = []
    inverse: list[int] = []
    for index, key in enumerate(keys):
        slot = position.setdefault(key, len(firsts))
        if slot == len(firsts):
            firsts.append(index)
        inverse.append(slot)
    return firsts, inverse

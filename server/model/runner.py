"""The model layer: one loaded model variant that embeds batches of requests. No Ray here.

``load_runner(model_cfg, variant_cfg, cache_dir)`` returns a ``ModelRunner``:

- ``description``: what the variant reports (dimensions, token limit, prompts, ...).
- ``embed_batch(items)``: every item's texts go through the model together
  (tokenized once, split into a few forward passes only where padding waste
  would cost more than a pass, see encoding.plan_chunks); then each item is
  post-processed on its own (Matryoshka dimensions, normalization, precision,
  see quantization.py). Errors that concern one item (an over-long input, an
  unknown prompt name, too many dimensions) are returned in that item's slot.
- ``count_tokens``, ``set_threads``, ``warmup``.
- ``stream_slots()``, ``embed_batch_on_stream(items)``: where the backend can run several
  batches at once on streams that share the thread budget (OpenVINO on a CPU), how many, and
  embed_batch on this thread's stream; any number of threads may call it at once.

The model's trailing ``Normalize`` module is removed at load so that
``normalize=False`` returns the raw pooled vectors; normalization happens in
numpy per item instead (same result, cosine >= 0.9999, see tests).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from embedpool.server import tracing
from embedpool.server.config.catalogue import ModelConfig, VariantConfig, resolve_cache_dir
from embedpool.server.errors import ConfigError, EmbedpoolError, InvalidArgument
from embedpool.server.model import backend_choice, int8_check
from embedpool.server.model import threads as thread_settings
from embedpool.server.model.custom import CustomEmbedder, default_count_tokens, import_class, instantiate
from embedpool.server.model.loading import (
    OPENVINO_PRECISION,
    WeightsLocation,
    dtype_is_openvino_precision,
    load_sentence_transformer,
    resolve_source,
)
from embedpool.server.model.openvino_forward import DirectForward
from embedpool.server.model.postprocess import (
    CALIBRATION_CORPUS,
    CalibrationRanges,
    check_precision,
    postprocess,
    resolve_dimensions,
)
from embedpool.server.model.tokenize import (
    CPU_FORWARD_OVERHEAD_TOKENS,
    GPU_FORWARD_OVERHEAD_TOKENS,
    FastEncoder,
    detect_layout,
    plan_chunks,
    unique_rows,
)
from embedpool.server.types import EmbedItem, EmbedOutput, VariantDescription

logger = logging.getLogger(__name__)

INPUT_TYPES = ("query", "document")
# sentence-transformers' encode_document looks for these prompt names, in this order.
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
_ST_SIMILARITY = {"cosine": "cosine", "dot": "dot_product", "euclidean": "euclidean"}


def load_runner(
    model_cfg: ModelConfig,
    variant_cfg: VariantConfig,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> ModelRunner:
    """Load a catalogue variant and calibrate it. Raises ConfigError when it cannot be served.

    ``cache_dir`` is where onnx/openvino exports are kept (None: $EMBEDPOOL_CACHE_DIR or
    ~/.cache/embedpool). ``threads`` overrides the variant's intra-op thread budget.
    """
    cache = resolve_cache_dir(cache_dir)
    threads = threads if threads is not None else variant_cfg.effective_threads
    if variant_cfg.backend == "custom":
        runner: ModelRunner = CustomRunner(model_cfg, variant_cfg, threads)
    elif variant_cfg.backend == "auto":
        choice, runner = backend_choice.choose(
            model_cfg,
            variant_cfg,
            cache,
            threads,
            resolve_source(model_cfg.source).location,
            lambda concrete: load_runner(model_cfg, concrete, cache, threads),
        )
        runner.description = replace(
            runner.description, backend_reason=choice.reason(), min_cosine_to_fp32=choice.winner.min_cosine
        )
    else:
        model, weights = load_sentence_transformer(model_cfg, variant_cfg, cache, threads)
        runner = SentenceTransformerRunner(model, model_cfg, variant_cfg, weights, threads)
        if runner.description.dtype in int8_check.INT8_LABELS:
            cosine = int8_check.check_against_fp32(
                runner,
                runner.weights,
                model_cfg,
                variant_cfg,
                cache,
                lambda torch_cfg: load_runner(model_cfg, torch_cfg, cache, threads),
            )
            runner.description = replace(runner.description, min_cosine_to_fp32=cosine)
    runner.description = replace(runner.description, cpu_features=backend_choice.cpu_features())
    return runner


def merge_prompts(model_prompts: dict[str, str] | None, catalogue_prompts: dict[str, str]) -> dict[str, str]:
    """Catalogue prompts over the model's own; empty texts mean 'no prompt' and are dropped."""
    merged = dict(model_prompts or {})
    merged.update(catalogue_prompts)
    return {name: text for name, text in merged.items() if text}


def _default_prompt_name(
    configured: str | None, candidates: Sequence[str], prompts: dict[str, str], fallback: str | None
) -> str | None:
    if configured is not None:
        return configured
    for name in candidates:
        if name in prompts:
            return name
    return fallback if fallback in prompts else None


class ModelRunner(ABC):
    """A loaded model variant. Concurrent embed_batch calls serialize; embed_batch_on_stream
    calls run side by side (and beside one embed_batch)."""

    description: VariantDescription

    def __init__(self, model_cfg: ModelConfig, variant_cfg: VariantConfig) -> None:
        self.model_name = model_cfg.name
        self.variant_name = variant_cfg.name or variant_cfg.derived_name()
        self.backend = variant_cfg.backend
        self.device = variant_cfg.device
        self.normalize_module_removed = False
        self._calibration: CalibrationRanges | None = None
        self._lock = threading.Lock()

    # -- the interface ------------------------------------------------------------------------

    def embed_batch(self, items: Sequence[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        """Embed every item; each slot holds the item's output or the error that concerns only it."""
        with self._lock:
            return self._embed_batch(items)

    def try_embed_batch(self, items: Sequence[EmbedItem]) -> list[EmbedOutput | EmbedpoolError] | None:
        """embed_batch, or None at once when another thread is using the model."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._embed_batch(items)
        finally:
            self._lock.release()

    def stream_slots(self) -> int:
        """Batches embed_batch_on_stream runs at once (0: this backend has no streams)."""
        return 0

    def embed_batch_on_stream(self, items: Sequence[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        """embed_batch on the calling thread's stream, beside other threads' (stream_slots > 0)."""
        raise NotImplementedError(f"{type(self).__name__} has no streams")

    def enter_stream_thread(self) -> None:  # noqa: B027 - optional: only backends with streams
        """Set up a thread that will call embed_batch_on_stream (its torch threads)."""

    @abstractmethod
    def _embed_batch(
        self, items: Sequence[EmbedItem], stream: bool = False
    ) -> list[EmbedOutput | EmbedpoolError]:
        """embed_batch without the lock (on this thread's stream with ``stream``)."""

    @abstractmethod
    def count_tokens(
        self,
        texts: Sequence[str],
        input_type: str = "document",
        prompt: str | None = None,
        prompt_name: str | None = None,
    ) -> list[int]:
        """Tokens per text, untruncated, prompt and special tokens included."""

    @abstractmethod
    def set_threads(self, threads: int) -> None:
        """Use ``threads`` intra-op threads (Ray sets OMP_NUM_THREADS=1 in actors)."""

    def warmup(self) -> None:
        """One small batch through the whole path, so the first request is not slow."""
        self.embed_batch([EmbedItem(texts=["warm up", "a slightly longer warm up text"])])

    # -- shared helpers -----------------------------------------------------------------------

    def resolve_prompt(self, input_type: str, prompt: str | None, prompt_name: str | None) -> str:
        """The prompt text put before each input. InvalidArgument for unknown names or types."""
        if input_type not in INPUT_TYPES:
            raise InvalidArgument(f"unknown input_type {input_type!r}; expected 'query' or 'document'")
        if prompt is not None:
            return prompt
        prompts = self.description.prompts
        if prompt_name:
            try:
                return prompts[prompt_name]
            except KeyError:
                available = ", ".join(sorted(prompts)) if prompts else "none"
                raise InvalidArgument(
                    f"unknown prompt_name {prompt_name!r} for model {self.model_name!r}; "
                    f"its prompts: {available}"
                ) from None
        name = (
            self.description.query_prompt_name
            if input_type == "query"
            else self.description.document_prompt_name
        )
        return prompts.get(name, "") if name else ""

    def _check_item(self, item: EmbedItem) -> tuple[str, int]:
        """(prompt text, output dimensions) for an item, or InvalidArgument."""
        if not item.texts:
            raise InvalidArgument("no inputs: give at least one text")
        check_precision(item.precision)
        dimensions = resolve_dimensions(item.dimensions, self.description.dimensions)
        prompt = self.resolve_prompt(item.input_type, item.prompt, item.prompt_name)
        return prompt, dimensions

    def _finish(
        self,
        item: EmbedItem,
        raw: np.ndarray,
        dimensions: int,
        input_tokens: int,
        truncated: int,
    ) -> EmbedOutput:
        vectors = postprocess(raw, dimensions, item.normalize, item.precision, self._calibration)
        return EmbedOutput(
            vectors=vectors, dimensions=dimensions, input_tokens=input_tokens, truncated=truncated
        )

    def _finish_all(
        self,
        items: Sequence[EmbedItem],
        results: list[EmbedOutput | EmbedpoolError | None],
        blocks: Iterable[tuple[int, np.ndarray, int, int, int]],
    ) -> None:
        """Post-process each accepted item's raw block; an item's error stays in its own slot."""
        for index, block, dimensions, tokens, truncated in blocks:
            try:
                results[index] = self._finish(items[index], block, dimensions, tokens, truncated)
            except EmbedpoolError as error:
                results[index] = error

    @staticmethod
    def _filled(results: list[EmbedOutput | EmbedpoolError | None]) -> list[EmbedOutput | EmbedpoolError]:
        """Every slot holds an output or an error by now. Timings are the replica's to write."""
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    @staticmethod
    def _over_long(index: int, tokens: int, limit: int) -> InvalidArgument:
        return InvalidArgument(
            f"input {index} has {tokens} tokens; the model's limit is {limit} (prompt included). "
            "Set truncate=true or shorten it."
        )

    def _calibrate(self, raw: np.ndarray) -> None:
        self._calibration = CalibrationRanges(raw)


# -- sentence-transformers backends ------------------------------------------------------------


def _is_simple_text_transformer(module: Any) -> bool:
    """A plain text Transformer module whose preprocessing we can reproduce exactly."""
    return (
        type(module).__name__ == "Transformer"
        and getattr(module, "transformer_task", "feature-extraction") == "feature-extraction"
        and list(getattr(module, "modality_config", {"text": None})) == ["text"]
        and not getattr(module, "can_flatten_inputs", False)
        and not any(getattr(module, "processing_kwargs", {}).values())
        and getattr(module, "tokenizer", None) is not None
    )


class SentenceTransformerRunner(ModelRunner):
    """torch / onnx / openvino through sentence-transformers' modules."""

    def __init__(
        self,
        model: Any,
        model_cfg: ModelConfig,
        variant_cfg: VariantConfig,
        weights: WeightsLocation,
        threads: int,
    ) -> None:
        super().__init__(model_cfg, variant_cfg)
        import torch

        self._torch = torch
        self.model = model
        self.weights = weights
        self.threads = threads
        # Keep Transformer + Pooling (+ Dense ...): normalization is per request, in numpy.
        while len(model) > 1 and type(model[len(model) - 1]).__name__ == "Normalize":
            del model[len(model) - 1]
            self.normalize_module_removed = True

        if model_cfg.max_seq_length is not None:
            limit = getattr(getattr(model[0], "config", None), "max_position_embeddings", None)
            if isinstance(limit, int) and limit > 0 and model_cfg.max_seq_length > limit:
                raise ConfigError(
                    f"model {model_cfg.name!r}: max_seq_length {model_cfg.max_seq_length} is more than its "
                    f"{limit} position embeddings"
                )
            model.max_seq_length = model_cfg.max_seq_length
        max_length = model.max_seq_length
        if not isinstance(max_length, int) or max_length <= 0 or max_length > 1_000_000:
            raise ConfigError(
                f"model {model_cfg.name!r} does not state its max input length; set max_seq_length"
            )
        self.max_length = max_length

        self._tokenizer = getattr(model, "tokenizer", None)
        self._encoder: FastEncoder | None = None
        if _is_simple_text_transformer(model[0]):
            layout = detect_layout(self._tokenizer)
            if layout is not None:
                self._encoder = FastEncoder(self._tokenizer, layout, max_length)
        if self._encoder is None:
            logger.info("%s: using sentence-transformers preprocessing (no fast path)", self.variant_name)
        self._needs_prompt_length = any(getattr(m, "include_prompt", True) is False for m in model)
        self._direct = DirectForward.fitting(model, self.backend, torch)
        self._device = torch.device(variant_cfg.device)
        self._overhead_tokens = (
            GPU_FORWARD_OVERHEAD_TOKENS if variant_cfg.device == "cuda" else CPU_FORWARD_OVERHEAD_TOKENS
        )
        self._token_cap = variant_cfg.batching.max_batch_tokens

        prompts = merge_prompts(getattr(model, "prompts", None), model_cfg.prompts)
        default_name = getattr(model, "default_prompt_name", None)
        query_name = _default_prompt_name(model_cfg.query_prompt_name, ("query",), prompts, default_name)
        document_name = _default_prompt_name(
            model_cfg.document_prompt_name, DOCUMENT_PROMPT_NAMES, prompts, default_name
        )
        for field, name in (("query_prompt_name", query_name), ("document_prompt_name", document_name)):
            if name is not None and name not in prompts:
                raise ConfigError(
                    f"model {model_cfg.name!r}: {field} {name!r} is not one of its prompts "
                    f"({', '.join(sorted(prompts)) or 'none'})"
                )
        similarity = model_cfg.similarity or _ST_SIMILARITY.get(str(model.similarity_fn_name), "cosine")

        raw = self._embed_texts(list(CALIBRATION_CORPUS))
        full_dimensions = int(raw.shape[1])
        dimensions = full_dimensions
        if model_cfg.truncate_dim is not None:
            if model_cfg.truncate_dim > full_dimensions:
                raise ConfigError(
                    f"model {model_cfg.name!r}: truncate_dim {model_cfg.truncate_dim} is more than its "
                    f"{full_dimensions} dimensions"
                )
            dimensions = model_cfg.truncate_dim
        self.full_dimensions = full_dimensions
        self._calibrate(raw)
        self.description = VariantDescription(
            dimensions=dimensions,
            max_input_tokens=max_length,
            dtype=_dtype_label(variant_cfg, weights.file_name, model),
            prompts=prompts,
            query_prompt_name=query_name,
            document_prompt_name=document_name,
            similarity=similarity,  # type: ignore[arg-type]
            backend=variant_cfg.backend,
        )

    # -- public ---------------------------------------------------------------------------------

    def count_tokens(
        self,
        texts: Sequence[str],
        input_type: str = "document",
        prompt: str | None = None,
        prompt_name: str | None = None,
    ) -> list[int]:
        prompt_text = self.resolve_prompt(input_type, prompt, prompt_name)
        with self._lock:  # a fast tokenizer must not be used from two threads at once
            return self._count([prompt_text + text for text in texts])

    def stream_slots(self) -> int:
        # Streams serve the fast path's forward only: the tokenizer's arrays, pooling over every
        # token (a prompt left out of pooling goes through optimum's own single request).
        if self._direct is None or self._encoder is None or self._needs_prompt_length:
            return 0
        return self._direct.stream_slots()

    def embed_batch_on_stream(self, items: Sequence[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        if not self.stream_slots():
            raise NotImplementedError(f"variant {self.variant_name!r} has no streams")
        return self._embed_batch(items, stream=True)

    def enter_stream_thread(self) -> None:
        thread_settings.for_current_thread(1)  # torch only pools beside a stream (streams are OpenVINO's)

    def warmup(self) -> None:
        super().warmup()
        if self.stream_slots():  # compiles the streamed model now, not on the first busy moment
            self.embed_batch_on_stream([EmbedItem(texts=["warm up", "a slightly longer warm up text"])])

    def set_threads(self, threads: int) -> None:
        threads = max(1, int(threads))
        self.threads = threads
        thread_settings.for_current_thread(thread_settings.torch_threads(self.backend, threads))
        inner = getattr(self.model[0], "auto_model", None)
        if self.backend == "onnx":
            thread_settings.rebuild_onnx_session(inner, threads)
        elif self.backend == "openvino":
            thread_settings.recompile_openvino(inner, threads)

    # -- internals ------------------------------------------------------------------------------

    def _count(self, full_texts: Sequence[str]) -> list[int]:
        if not full_texts:
            return []
        if self._encoder is not None:
            return self._encoder.count(full_texts)
        if self._tokenizer is not None:
            ids = self._tokenizer(list(full_texts), add_special_tokens=True, truncation=False, verbose=False)
            return [len(row) for row in ids["input_ids"]]
        features = self.model.preprocess(list(full_texts))
        return [int(n) for n in features["attention_mask"].sum(dim=1).tolist()]

    def _forward(
        self, features: dict[str, Any], prompt_length: int | None, stream: bool = False
    ) -> np.ndarray:
        if prompt_length is None and self._direct is not None and self._direct.accepts(features):
            return self._direct(features, stream)
        if stream:  # arrays the streams cannot take: optimum's one request, one thread at a time
            with self._lock:
                return self._forward(features, prompt_length)
        torch = self._torch
        tensors: dict[str, Any] = {}
        for key, value in features.items():
            if isinstance(value, np.ndarray):
                value = torch.from_numpy(value)
            if isinstance(value, torch.Tensor) and value.device != self._device:
                value = value.to(self._device, non_blocking=True)
            tensors[key] = value
        if prompt_length is not None:
            tensors["prompt_length"] = prompt_length
        with torch.inference_mode():
            embeddings = self.model.forward(tensors)["sentence_embedding"]
            if embeddings.dtype != torch.float32:
                embeddings = embeddings.float()
            vectors: np.ndarray = embeddings.cpu().numpy()
            return vectors

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """Raw vectors for plain texts (no prompt, right truncation): calibration and warmup."""
        if self._encoder is not None:
            rows = [self._encoder.truncate_right(ids) for ids in self._encoder.tokenize(texts)]
            return self._run_rows(rows, [""] * len(rows))
        return self._run_fallback(texts, [""] * len(texts), ["right"] * len(texts))

    def _run_rows(self, rows: list[list[int]], prompts: list[str], stream: bool = False) -> np.ndarray:
        """Forward token rows (fast path); identical rows (same ids, same pooling) run once."""
        firsts, inverse = self._distinct(rows, prompts)
        if len(firsts) == len(rows):
            return self._run_distinct_rows(rows, prompts, stream)
        vectors = self._run_distinct_rows([rows[i] for i in firsts], [prompts[i] for i in firsts], stream)
        return vectors[inverse]

    def _run_distinct_rows(
        self, rows: list[list[int]], prompts: list[str], stream: bool = False
    ) -> np.ndarray:
        """Forward token rows, grouped by prompt only if pooling must skip the prompt."""
        assert self._encoder is not None
        out: np.ndarray | None = None
        groups: dict[str | None, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt if self._needs_prompt_length else None, []).append(index)
        for group_prompt, members in groups.items():
            prompt_length = self._encoder.prompt_length(group_prompt) if group_prompt else None
            lengths = [len(rows[i]) for i in members]
            for chunk in plan_chunks(lengths, self._token_cap, self._overhead_tokens):
                indices = [members[i] for i in chunk]
                vectors = self._forward(self._encoder.pad([rows[i] for i in indices]), prompt_length, stream)
                if out is None:
                    out = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
                out[indices] = vectors
        assert out is not None
        return out

    def _distinct(self, rows: list[list[int]], prompts: list[str]) -> tuple[list[int], list[int]]:
        """unique_rows over (ids, prompt where pooling skips it): rows that give the same vector."""
        pooled_prompts = prompts if self._needs_prompt_length else [""] * len(prompts)
        return unique_rows([(tuple(row), p) for row, p in zip(rows, pooled_prompts, strict=True)])

    def _padded_tokens(self, rows: list[list[int]], prompts: list[str]) -> tuple[int, int]:
        """(distinct rows, tokens the forward passes ran, padding included): what the plan of
        `_run_rows` costs; asked only when a trace records it."""
        firsts, _ = self._distinct(rows, prompts)
        lengths = [len(rows[i]) for i in firsts]
        return len(firsts), sum(
            len(chunk) * max(lengths[i] for i in chunk)
            for chunk in plan_chunks(lengths, self._token_cap, self._overhead_tokens)
        )

    def _run_fallback(self, texts: list[str], prompts: list[str], sides: list[str]) -> np.ndarray:
        """sentence-transformers' own preprocessing; identical (text, prompt, side) run once."""
        firsts, inverse = unique_rows(list(zip(texts, prompts, sides, strict=True)))
        if len(firsts) == len(texts):
            return self._run_distinct_fallback(texts, prompts, sides)
        texts, prompts, sides = ([values[i] for i in firsts] for values in (texts, prompts, sides))
        return self._run_distinct_fallback(texts, prompts, sides)[inverse]

    def _run_distinct_fallback(self, texts: list[str], prompts: list[str], sides: list[str]) -> np.ndarray:
        """sentence-transformers' own preprocessing, grouped by (prompt, truncation side).

        Used for models whose first module is not a plain text Transformer with a fast tokenizer.
        Left truncation here cuts prompt + text from the left, as sentence-transformers would.
        """
        out: np.ndarray | None = None
        groups: dict[tuple[str, str], list[int]] = {}
        for index, key in enumerate(zip(prompts, sides, strict=True)):
            groups.setdefault(key, []).append(index)
        tokenizer = self._tokenizer
        for (prompt, side), members in groups.items():
            lengths = [min(len(prompt) + len(texts[i]), self.max_length) for i in members]
            for chunk in plan_chunks(lengths, self._token_cap * 4, self._overhead_tokens):
                indices = [members[i] for i in chunk]
                previous = getattr(tokenizer, "truncation_side", None)
                try:
                    if tokenizer is not None and side == "left":
                        tokenizer.truncation_side = "left"
                    features = self.model.preprocess([texts[i] for i in indices], prompt=prompt or None)
                finally:
                    if tokenizer is not None and previous is not None:
                        tokenizer.truncation_side = previous
                vectors = self._forward(features, None)
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                out[indices] = vectors
        assert out is not None
        return out

    def _embed_batch(
        self, items: Sequence[EmbedItem], stream: bool = False
    ) -> list[EmbedOutput | EmbedpoolError]:
        results: list[EmbedOutput | EmbedpoolError | None] = [None] * len(items)
        checked: list[tuple[int, str, int]] = []  # (item index, prompt, dimensions)
        full_texts: list[str] = []
        for index, item in enumerate(items):
            try:
                prompt, dimensions = self._check_item(item)
            except EmbedpoolError as error:
                results[index] = error
                continue
            checked.append((index, prompt, dimensions))
            full_texts.extend(prompt + text for text in item.texts)

        encoder = self._encoder
        with tracing.span("embedpool tokenize", attributes={"embedpool.texts": len(full_texts)}):
            ids: list[list[int]] = encoder.tokenize(full_texts) if encoder is not None else []
            counts = [len(row) for row in ids] if encoder is not None else self._count(full_texts)

        # Per item: refuse over-long inputs (truncate off), or truncate them.
        limit = self.max_length
        rows: list[list[int]] = []
        row_texts: list[str] = []
        row_prompts: list[str] = []
        row_sides: list[str] = []
        accepted: list[tuple[int, str, int, int, int, int]] = []  # + (first row, tokens, truncated)
        position = 0
        for index, prompt, dimensions in checked:
            item = items[index]
            n = len(item.texts)
            item_counts = counts[position : position + n]
            over = [j for j, c in enumerate(item_counts) if c > limit]
            if over and not item.truncate:
                results[index] = self._over_long(over[0], item_counts[over[0]], limit)
                position += n
                continue
            side = "left" if (item.truncate and item.truncate_left) else "right"
            first_row = len(row_texts)
            for j in range(n):
                if encoder is not None:
                    row = ids[position + j]
                    if item_counts[j] > limit:
                        row = (
                            encoder.truncate_left(full_texts[position + j], len(prompt))
                            if side == "left"
                            else encoder.truncate_right(row)
                        )
                    rows.append(row)
                row_texts.append(item.texts[j])
                row_prompts.append(prompt)
                row_sides.append(side)
            tokens = sum(min(c, limit) for c in item_counts)
            accepted.append((index, prompt, dimensions, first_row, tokens, len(over)))
            position += n

        if accepted:
            tokens_in = sum(a[4] for a in accepted)
            with tracing.span(
                "embedpool forward",
                attributes={"embedpool.texts": len(row_texts), "embedpool.tokens": tokens_in},
            ) as forward:
                if encoder is not None:
                    raw = self._run_rows(rows, row_prompts, stream)
                    if forward is not None:  # the plan again, only when a trace records it
                        distinct, padded = self._padded_tokens(rows, row_prompts)
                        tracing.set_attributes(forward, distinct_texts=distinct, padded_tokens=padded)
                else:
                    raw = self._run_fallback(row_texts, row_prompts, row_sides)
            blocks = (
                (index, raw[first : first + len(items[index].texts)], dimensions, tokens, truncated)
                for index, _prompt, dimensions, first, tokens, truncated in accepted
            )
            with tracing.span("embedpool postprocess", attributes={"embedpool.requests": len(accepted)}):
                self._finish_all(items, results, blocks)
        return self._filled(results)


def _openvino_precision(model: Any) -> str | None:
    """What the compiled OpenVINO model runs in ('bfloat16', 'float32'), or None when unknown."""
    try:
        precision = model[0].auto_model.request.get_property("INFERENCE_PRECISION_HINT")
    except Exception:  # pragma: no cover - depends on optimum internals
        return None
    dtypes = {hint: dtype for dtype, hint in OPENVINO_PRECISION.items()}
    return dtypes.get(str(precision.get_type_name()))


def _dtype_label(variant_cfg: VariantConfig, file_name: str | None, model: Any) -> str:
    """VariantInfo.dtype: float32/float16/bfloat16 (for OpenVINO's fp32 model, the precision the
    compiled model runs), or the quantized file's kind."""
    if dtype_is_openvino_precision(variant_cfg):
        return _openvino_precision(model) or variant_cfg.dtype
    if variant_cfg.backend == "openvino" and variant_cfg.quantize == "weights-int8":
        return "int8-weights"
    if file_name:
        stem = Path(file_name).stem.lower()
        for label in ("quint8", "qint8", "qint4", "int8", "int4", "fp16", "bf16"):
            if label in stem:
                return label
    return variant_cfg.dtype


# -- custom classes ------------------------------------------------------------------------------


class CustomRunner(ModelRunner):
    """A user class (custom_model.CustomEmbedder) with the pool's post-processing."""

    def __init__(self, model_cfg: ModelConfig, variant_cfg: VariantConfig, threads: int) -> None:
        super().__init__(model_cfg, variant_cfg)
        if variant_cfg.class_path is None:
            raise ConfigError(f"variant {self.variant_name!r}: the custom backend needs class_path")
        thread_settings.for_current_thread(threads)
        cls = import_class(variant_cfg.class_path)
        self.embedder: CustomEmbedder = instantiate(cls, variant_cfg.class_kwargs, variant_cfg.device)
        self.full_dimensions = int(self.embedder.dimensions)
        self.max_length = int(model_cfg.max_seq_length or self.embedder.max_input_tokens)
        counter = getattr(self.embedder, "count_tokens", None)
        self._counter = counter if callable(counter) else default_count_tokens
        self.set_threads(threads)

        prompts = merge_prompts(getattr(self.embedder, "prompts", None), model_cfg.prompts)
        for field in ("query_prompt_name", "document_prompt_name"):
            name = getattr(model_cfg, field)
            if name is not None and name not in prompts:
                raise ConfigError(
                    f"model {model_cfg.name!r}: {field} {name!r} is not one of its prompts "
                    f"({', '.join(sorted(prompts)) or 'none'})"
                )
        dimensions = self.full_dimensions
        if model_cfg.truncate_dim is not None:
            if model_cfg.truncate_dim > self.full_dimensions:
                raise ConfigError(
                    f"model {model_cfg.name!r}: truncate_dim {model_cfg.truncate_dim} is more than its "
                    f"{self.full_dimensions} dimensions"
                )
            dimensions = model_cfg.truncate_dim
        self.description = VariantDescription(
            dimensions=dimensions,
            max_input_tokens=self.max_length,
            dtype=str(getattr(self.embedder, "dtype", variant_cfg.dtype)),
            prompts=prompts,
            # The class applies its own per-input-type instruction; the pool adds one only if configured.
            query_prompt_name=model_cfg.query_prompt_name,
            document_prompt_name=model_cfg.document_prompt_name,
            similarity=model_cfg.similarity or "cosine",
            backend="custom",
        )
        self._calibrate(self._embed(list(CALIBRATION_CORPUS), "document"))

    def set_threads(self, threads: int) -> None:
        thread_settings.for_current_thread(threads)
        setter = getattr(self.embedder, "set_threads", None)
        if callable(setter):
            setter(max(1, int(threads)))

    def count_tokens(
        self,
        texts: Sequence[str],
        input_type: str = "document",
        prompt: str | None = None,
        prompt_name: str | None = None,
    ) -> list[int]:
        prompt_text = self.resolve_prompt(input_type, prompt, prompt_name)
        return [int(n) for n in self._counter([prompt_text + text for text in texts])]

    def _embed(self, texts: list[str], input_type: str) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(texts, input_type))
        if vectors.ndim != 2 or vectors.shape != (len(texts), self.full_dimensions):
            raise RuntimeError(
                f"{type(self.embedder).__qualname__}.embed returned shape {vectors.shape}; expected "
                f"({len(texts)}, {self.full_dimensions})"
            )
        return vectors.astype(np.float32, copy=False)

    def _embed_batch(
        self, items: Sequence[EmbedItem], stream: bool = False
    ) -> list[EmbedOutput | EmbedpoolError]:
        results: list[EmbedOutput | EmbedpoolError | None] = [None] * len(items)
        by_type: dict[str, list[str]] = {}
        accepted: list[tuple[int, int, str, int, int, int]] = []
        limit = self.max_length
        for index, item in enumerate(items):
            try:
                prompt, dimensions = self._check_item(item)
            except EmbedpoolError as error:
                results[index] = error
                continue
            full = [prompt + text for text in item.texts]
            counts = [int(n) for n in self._counter(full)]
            over = [j for j, c in enumerate(counts) if c > limit]
            if over and not item.truncate:
                results[index] = self._over_long(over[0], counts[over[0]], limit)
                continue
            texts = by_type.setdefault(item.input_type, [])
            accepted.append(
                (
                    index,
                    dimensions,
                    item.input_type,
                    len(texts),
                    sum(min(c, limit) for c in counts),
                    len(over),
                )
            )
            texts.extend(full)
        raw_by_type = {input_type: self._embed(texts, input_type) for input_type, texts in by_type.items()}
        blocks = (
            (
                index,
                raw_by_type[input_type][first : first + len(items[index].texts)],
                dimensions,
                tokens,
                truncated,
            )
            for index, dimensions, input_type, first, tokens, truncated in accepted
        )
        self._finish_all(items, results, blocks)
        return self._filled(results)

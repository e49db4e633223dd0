"""What EmbeddingClient and AsyncEmbeddingClient share apart from request building
(in _request): settings, the cached server limit, local similarity and mean_agg."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np

from ._options import ClientOptions
from ._request import EmbedSpec, InputTypeName, batch_size
from .errors import EmbedpoolError
from .similarity import SimilarityMode, VectorLike, similarity

__all__ = ["AggFn", "ClientBase", "mean_agg"]

#: Aggregates several embeddings into one (LlamaIndex's ``agg_fn``).
AggFn = Callable[[list[list[float]]], list[float]]


def mean_agg(embeddings: list[list[float]]) -> list[float]:
    """The element-wise mean, as LlamaIndex's ``mean_agg``."""
    mean: list[float] = np.array(embeddings).mean(axis=0).tolist()
    return mean


class ClientBase:
    """Settings and non-I/O behaviour common to both clients."""

    _options: ClientOptions
    _owns_channel: bool
    _metadata: tuple[tuple[str, str], ...]
    # The Limits.max_inputs_per_request of the client's model: None until fetched, 0 for none.
    _server_max_inputs: int | None

    def __init__(self, options: ClientOptions, *, owns_channel: bool) -> None:
        self._options = options
        self._owns_channel = owns_channel
        self._metadata = options.call_metadata(own_channel=owns_channel)
        self._server_max_inputs = None
        self._closed = False

    # Read-only views of the settings most callers want to see.
    @property
    def target(self) -> str:
        return self._options.target

    @property
    def model(self) -> str:
        """The model name requests carry ("" means the pool's default model)."""
        return self._options.model

    @property
    def embed_batch_size(self) -> int:
        return self._options.embed_batch_size

    @property
    def timeout(self) -> float | None:
        return self._options.timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r}, model={self.model!r})"

    def similarity(
        self,
        embedding1: VectorLike,
        embedding2: VectorLike,
        mode: SimilarityMode | str = SimilarityMode.DEFAULT,
    ) -> float:
        """Score two vectors locally, with LlamaIndex's math (see ``embedpool.similarity``)."""
        return similarity(embedding1, embedding2, mode)

    def _spec(self, input_type: InputTypeName) -> EmbedSpec:
        """The client's default settings for one input type (LlamaIndex methods, count_tokens)."""
        return EmbedSpec.resolve(self._options, input_type=input_type)

    def _check_open(self) -> None:
        if self._closed:
            raise EmbedpoolError("the client is closed")

    def _batch_size(self) -> int:
        return batch_size(self._options, self._server_max_inputs or 0)

    def _remember_limit(self, max_inputs: int) -> None:
        self._server_max_inputs = max_inputs

    @staticmethod
    def _limit_unknowable(err: EmbedpoolError) -> bool:
        """A pool without GetModel: split by embed_batch_size alone."""
        return err.code == grpc.StatusCode.UNIMPLEMENTED

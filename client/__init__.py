"""embedpool: a thin typed client of the embedpool gRPC embedding pool.

``EmbeddingClient`` (blocking) and ``AsyncEmbeddingClient`` (asyncio) have
LlamaIndex's embedding methods (``get_text_embedding_batch``, ...; async:
``aget_*``) plus pool-native ones returning numpy arrays (``embed``,
``rank``, ...). Errors derive from ``EmbedpoolError`` (see embedpool.errors).
``ClientOptions`` is what both constructors take, validated once; with it, code that
drives the generated stubs itself (``embedpool bench``) builds the same channels.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._options import ClientOptions
from .async_client import AsyncEmbeddingClient
from .errors import (
    AuthenticationError,
    DeadlineExceededError,
    EmbedpoolError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    PoolUnavailableError,
)
from .lazy import LazyClients
from .results import EmbedResult, ModelInfo, ModelLimits, VariantInfo
from .similarity import SimilarityMode, similarity
from .sync_client import EmbeddingClient

try:
    __version__ = version("embedpool")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncEmbeddingClient",
    "AuthenticationError",
    "ClientOptions",
    "DeadlineExceededError",
    "EmbedResult",
    "EmbeddingClient",
    "EmbedpoolError",
    "InvalidInputError",
    "LazyClients",
    "ModelInfo",
    "ModelLimits",
    "ModelNotFoundError",
    "OverloadedError",
    "PoolUnavailableError",
    "SimilarityMode",
    "VariantInfo",
    "__version__",
    "similarity",
]

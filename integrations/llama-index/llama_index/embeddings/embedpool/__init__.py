"""LlamaIndex embeddings served by an embedpool pool."""

from llama_index.embeddings.embedpool.base import EmbedpoolEmbedding

__all__ = ["EmbedpoolEmbedding"]

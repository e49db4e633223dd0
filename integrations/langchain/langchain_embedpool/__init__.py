"""LangChain embeddings served by an embedpool pool."""

from langchain_embedpool.embeddings import EmbedpoolEmbeddings

__all__ = ["EmbedpoolEmbeddings"]

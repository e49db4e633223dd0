"""The model layer: load one catalogue variant and embed batches with it.

Runners per backend (runner.py), tokenization and forward planning (tokenize.py),
post-processing of vectors (postprocess.py), loading and exports (loading.py,
export_cache.py), custom models (custom.py), thread settings (threads.py).

May import: embedpool.server.{errors,types,config}, numpy, torch, sentence-transformers,
optimum. Never ray, grpc or the generated code: it runs, and is tested, without a pool.
"""

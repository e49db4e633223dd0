"""The network fronts of a Router replica and what they share.

grpc_server.py (the pool's own gRPC port), grpc_decode.py (its decoding interceptor),
auth.py (bearer tokens), outcome.py (the one error -> status/trailers/metrics adapter
every front uses, Ray's proxy path included).

May import: embedpool.server.{service,errors,types,config}, grpc, the generated code.
Never ray.
"""

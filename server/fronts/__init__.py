"""The network fronts of a Router replica and what they share.

grpc_server.py (the pool's own gRPC port), grpc_decode.py (its decoding interceptor),
http_server.py (OpenAI's embeddings API over HTTP, Starlette on uvicorn) and
openai_bodies.py (its pydantic bodies), auth.py (bearer tokens, both fronts),
outcome.py (the one error -> status/trailers/HTTP envelope/metrics adapter every front
uses, Ray's proxy path included).

May import: embedpool.server.{service,errors,types,config}, grpc, the generated code,
starlette, uvicorn, pydantic.
Never ray.
"""

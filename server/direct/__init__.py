"""The direct Router -> replica channel: a gRPC call per batch beside Ray's handle.

wire.py (the bytes, derived from the EmbedItem/EmbedOutput dataclasses), sender.py
(the Router's end: endpoint choice, fallback to the handle), receiver.py (the replica's end).

May import: embedpool.server.{service,errors,types}, grpc, numpy. Never ray: the
serving package feeds it the endpoints it reads from Ray's GCS.
"""

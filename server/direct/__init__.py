"""The direct Router -> replica channel: frames on a kept-open TCP
connection beside Ray's handle.

wire.py (the frames and bytes, derived from the EmbedItem/EmbedOutput dataclasses), sender.py
(the Router's end: endpoint choice, fallback to the handle), receiver.py (the replica's end).

May import: embedpool.server.{service,errors,types}, asyncio, numpy. Never ray: the
serving package feeds it the endpoints it reads from Ray's GCS.
"""

"""The bytes of the Router -> replica direct channel (sender.py, receiver.py).

One TCP connection per Router and replica carries frames both ways, many batches at once:

    4-byte big-endian payload length | 8-byte request id | 1-byte kind | payload

The Router's first frame is HELLO with the replica's token; then BATCH frames, each
answered by a RESULTS or a REFUSED frame with the same request id (REFUSED with id 0
refuses the connection). A REFUSED payload is JSON [status name, message]. BESIDE is a
BATCH the Router sent while another of its batches to that replica was still out: the
replica may run the two side by side (replica.py).

A batch goes out as JSON (texts and options; no pickle, so a peer that reaches the
port cannot run code in the replica) and comes back as one JSON header plus the
vectors' raw bytes, laid end to end:

    4-byte big-endian header length | header JSON | vector bytes of result 0 | result 1 | ...

Each header entry is either {"ok": [dtype, rows, cols, *the other EmbedOutput fields]}
or {"error": [error class name in errors.py, message]}. The field lists are read off the
dataclasses, so a field added to EmbedItem or EmbedOutput travels here as it does over
Ray's handle (pickle); a test fails if a field does not round-trip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import struct
from typing import Any

import numpy as np

from embedpool.server import errors
from embedpool.server.types import EmbedItem, EmbedOutput

HELLO, BATCH, RESULTS, REFUSED, BESIDE = 1, 2, 3, 4, 5
FRAME = struct.Struct(">IQB")
# Statuses a REFUSED frame names (gRPC's names, which the logs and messages reuse).
UNAUTHENTICATED = "UNAUTHENTICATED"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
UNKNOWN = "UNKNOWN"
UNAVAILABLE = "UNAVAILABLE"  # never sent: the sender's name for a connection that failed

_ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(EmbedItem))
# Every EmbedOutput field but the vectors, which travel as raw bytes after the header.
_OUTPUT_FIELDS = tuple(f.name for f in dataclasses.fields(EmbedOutput) if f.name != "vectors")
_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8}
_HEADER = struct.Struct(">I")


class WireError(ValueError):
    """Bytes that are not a well-formed message of this channel."""


def encode_items(items: list[EmbedItem]) -> bytes:
    rows = [[getattr(item, name) for name in _ITEM_FIELDS] for item in items]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()


def decode_items(data: bytes) -> list[EmbedItem]:
    try:
        rows = json.loads(data)
        if not isinstance(rows, list):
            raise WireError("expected a list of items")
        items = []
        for row in rows:
            if not isinstance(row, list) or len(row) != len(_ITEM_FIELDS):
                raise WireError("an item has the wrong shape")
            item = EmbedItem(**dict(zip(_ITEM_FIELDS, row, strict=True)))
            if not isinstance(item.texts, list) or not all(isinstance(t, str) for t in item.texts):
                raise WireError("texts must be a list of strings")
            items.append(item)
        return items
    except (ValueError, TypeError) as exc:  # json's errors are ValueErrors
        raise WireError(f"malformed batch: {exc}") from exc


def encode_results(results: list[EmbedOutput | errors.EmbedpoolError]) -> bytes:
    header: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for result in results:
        if isinstance(result, errors.EmbedpoolError):
            header.append({"error": [type(result).__name__, result.message]})
            continue
        vectors = np.ascontiguousarray(result.vectors)
        rows, cols = vectors.shape
        header.append({"ok": [vectors.dtype.name, rows, cols, *(getattr(result, f) for f in _OUTPUT_FIELDS)]})
        blobs.append(vectors.tobytes())
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    return b"".join([_HEADER.pack(len(head)), head, *blobs])


def decode_results(data: bytes) -> list[EmbedOutput | errors.EmbedpoolError]:
    try:
        (size,) = _HEADER.unpack_from(data)
        header = json.loads(data[_HEADER.size : _HEADER.size + size])
        offset = _HEADER.size + size
        view = memoryview(data)
        out: list[EmbedOutput | errors.EmbedpoolError] = []
        for entry in header:
            if "error" in entry:
                name, message = entry["error"]
                out.append(_error_class(name)(message))
                continue
            dtype_name, rows, cols, *values = entry["ok"]
            if len(values) != len(_OUTPUT_FIELDS):
                raise WireError("a result has the wrong shape")
            dtype = np.dtype(_DTYPES[dtype_name])
            end = offset + rows * cols * dtype.itemsize
            if end > len(data):
                raise WireError("vector bytes are cut short")
            vectors = np.frombuffer(view[offset:end], dtype=dtype).reshape(rows, cols)
            offset = end
            out.append(EmbedOutput(vectors=vectors, **dict(zip(_OUTPUT_FIELDS, values, strict=True))))
        if offset != len(data):
            raise WireError("trailing bytes after the last vector")
        return out
    except (ValueError, TypeError, KeyError, struct.error) as exc:
        raise WireError(f"malformed results: {exc}") from exc


def _error_class(name: str) -> type[errors.EmbedpoolError]:
    """The pool's own error class of that name (Overloaded and MessageTooLarge share a code)."""
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.EmbedpoolError):
        return cls
    return errors.EmbedpoolError


def frame(kind: int, request_id: int, payload: bytes) -> list[bytes]:
    """A frame as buffers for StreamWriter.writelines (the payload is not copied)."""
    return [FRAME.pack(len(payload), request_id, kind), payload]


def refused(request_id: int, status: str, message: str) -> list[bytes]:
    """A REFUSED frame (request id 0: the whole connection), as `frame` gives it."""
    return frame(REFUSED, request_id, json.dumps([status, message], ensure_ascii=False).encode())


def read_refusal(payload: bytes) -> tuple[str, str]:
    try:
        status, message = json.loads(payload)
        return str(status), str(message)
    except (ValueError, TypeError) as exc:
        raise WireError(f"malformed refusal: {exc}") from exc


async def read_frame(reader: asyncio.StreamReader, max_size: int = 1 << 32) -> tuple[int, int, bytes]:
    """(kind, request id, payload); asyncio.IncompleteReadError when the peer hung up, WireError
    when the payload would be over `max_size` (read no further: the peer is not one of ours)."""
    size, request_id, kind = FRAME.unpack(await reader.readexactly(FRAME.size))
    if size > max_size:
        raise WireError(f"a frame of {size} bytes, over {max_size}")
    return kind, request_id, await reader.readexactly(size)

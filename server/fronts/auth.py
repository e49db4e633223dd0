"""Optional bearer-token auth. Tokens come from the environment or a file, never from logs.

EMBEDPOOL_TOKENS: comma-separated tokens. EMBEDPOOL_TOKEN_FILE: one token per
line. With neither set, auth is off. Health and reflection stay open.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterable
from pathlib import Path

from embedpool.server.errors import Unauthenticated

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenAuth:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens if t]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> TokenAuth:
        env = os.environ if environ is None else environ
        tokens = [t.strip() for t in env.get("EMBEDPOOL_TOKENS", "").split(",")]
        path = env.get("EMBEDPOOL_TOKEN_FILE")
        if path:
            tokens += [line.strip() for line in Path(path).read_text().splitlines()]
        return cls(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        """Raise Unauthenticated unless the metadata carries a known bearer token."""
        if not self._tokens:
            return
        header = next((v for k, v in metadata if k.lower() == "authorization"), None)
        if header is None:
            raise Unauthenticated("missing 'authorization: Bearer <token>' metadata")
        raw = header.encode() if isinstance(header, str) else header
        scheme, _, token = raw.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
        # Compare against every token in constant time, so timing says nothing.
        if not any([hmac.compare_digest(token.strip(), t) for t in self._tokens]):
            raise Unauthenticated("the bearer token is not valid for this pool")

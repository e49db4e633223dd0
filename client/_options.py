"""Client settings and gRPC channel construction, shared by both clients."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from ._retry import RetryPolicy
from .errors import InvalidInputError
from .v1 import embedding_service_pb2 as pb
from .vocabulary import BACKENDS, DEVICES

__all__ = ["DEFAULT_TARGET", "TOKEN_ENV", "ClientOptions"]

DEFAULT_TARGET = "localhost:50051"
TOKEN_ENV = "EMBEDPOOL_TOKEN"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _user_agent() -> str:
    from . import __version__

    return f"embedpool-python/{__version__}"


def _read_pem(root_certificates: bytes | str | Path) -> bytes:
    if isinstance(root_certificates, bytes):
        return root_certificates
    if isinstance(root_certificates, str) and root_certificates.lstrip().startswith("-----BEGIN"):
        return root_certificates.encode()
    return Path(root_certificates).expanduser().read_bytes()


@dataclass(frozen=True)
class ClientOptions:
    """Everything the constructors take, validated once; see EmbeddingClient for meanings."""

    target: str = DEFAULT_TARGET
    model: str = ""
    variant: str = ""
    backend: str | None = None
    device: str | None = None
    embed_batch_size: int = 256
    max_concurrency: int = 8
    timeout: float | None = 30.0
    retries: int = 3
    retry_backoff: float = 0.05
    truncate: bool = True
    normalize: bool = True
    dimensions: int = 0
    query_instruction: str | None = None
    text_instruction: str | None = None
    tls: bool = False
    root_certificates: bytes | str | Path | None = None
    token: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    keepalive_time_ms: int | None = 30000
    channel_options: tuple[tuple[str, Any], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend not in BACKENDS.names:
            raise InvalidInputError(f"backend must be one of {sorted(BACKENDS.names)}, not {self.backend!r}")
        if self.device is not None and self.device not in DEVICES.names:
            raise InvalidInputError(f"device must be one of {sorted(DEVICES.names)}, not {self.device!r}")
        if self.embed_batch_size < 1:
            raise InvalidInputError(f"embed_batch_size must be at least 1, not {self.embed_batch_size}")
        if self.max_concurrency < 1:
            raise InvalidInputError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidInputError(f"timeout must be positive or None, not {self.timeout}")
        if self.retries < 0 or self.retry_backoff < 0:
            raise InvalidInputError("retries and retry_backoff must not be negative")
        if self.dimensions < 0:
            raise InvalidInputError(f"dimensions must not be negative, not {self.dimensions}")
        if self.max_message_bytes < 1:
            raise InvalidInputError(f"max_message_bytes must be positive, not {self.max_message_bytes}")
        if self.token is None:
            object.__setattr__(self, "token", os.environ.get(TOKEN_ENV) or None)

    @property
    def use_tls(self) -> bool:
        return self.tls or self.root_certificates is not None

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(retries=self.retries, backoff=self.retry_backoff)

    def selector(self) -> pb.ModelSelector:
        return pb.ModelSelector(
            model=self.model,
            variant=self.variant,
            backend=BACKENDS.numbers[self.backend] if self.backend else pb.BACKEND_UNSPECIFIED,  # type: ignore[index]
            device=DEVICES.numbers[self.device] if self.device else pb.DEVICE_UNSPECIFIED,  # type: ignore[index]
        )

    def grpc_options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.primary_user_agent", _user_agent()),
        ]
        if self.keepalive_time_ms is not None:
            options.append(("grpc.keepalive_time_ms", self.keepalive_time_ms))
        # gRPC keeps the first of duplicate keys, so the caller's options replace ours.
        overridden = {key for key, _ in self.channel_options}
        return [opt for opt in options if opt[0] not in overridden] + list(self.channel_options)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """For a channel the client builds: TLS credentials carrying the bearer
        token, or None for plaintext."""
        if not self.use_tls:
            return None
        pem = _read_pem(self.root_certificates) if self.root_certificates is not None else None
        creds = grpc.ssl_channel_credentials(root_certificates=pem)
        if self.token:
            creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(self.token))
        return creds

    def call_metadata(self, own_channel: bool) -> tuple[tuple[str, str], ...]:
        """Metadata sent with every call: the caller's, plus ``authorization:
        Bearer <token>`` unless the token rides in the TLS channel credentials.

        A bearer token over plaintext is sent as plain metadata (meant for
        loopback); on a channel the caller brought, always as metadata.
        """
        metadata = self.metadata
        if self.token and not (own_channel and self.use_tls):
            metadata = (*metadata, ("authorization", f"Bearer {self.token}"))
        return metadata

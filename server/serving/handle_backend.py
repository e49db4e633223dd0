"""A model variant reached through a Ray Serve deployment handle.

Maps Ray's failures to the pool's errors: a full queue is RESOURCE_EXHAUSTED, a
dead or missing replica is UNAVAILABLE (safe to retry: the work did not finish).
"""

from __future__ import annotations

from typing import Any

from ray import exceptions as ray_exceptions
from ray.serve import exceptions as serve_exceptions
from ray.serve.handle import DeploymentHandle

from embedpool.server import tracing
from embedpool.server.errors import EmbedpoolError, Overloaded, Unavailable
from embedpool.server.types import EmbedItem, EmbedOutput, InputType, VariantDescription


class RayVariantBackend:
    def __init__(self, name: str, handle: DeploymentHandle[Any]) -> None:
        self.name = name
        self.handle = handle

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.handle, method).remote(*args)
        except serve_exceptions.BackPressureError as exc:
            raise Overloaded(
                f"model variant {self.name} is at its queue limit; retry with backoff or add replicas"
            ) from exc
        except EmbedpoolError as exc:  # raised in the replica; Ray wraps it, keep the original
            # exc is a RayTaskError(<ours>) subclass: rebuild our own class, not Ray's wrapper.
            cause = getattr(exc, "cause", exc)
            original = cause if isinstance(cause, EmbedpoolError) else exc
            own = next(
                c
                for c in type(original).__mro__
                if issubclass(c, EmbedpoolError) and not issubclass(c, ray_exceptions.RayError)
            )
            raise own(original.message) from None
        except (
            ray_exceptions.RayActorError,
            ray_exceptions.ActorUnavailableError,
            serve_exceptions.DeploymentUnavailableError,
            serve_exceptions.ReplicaUnavailableError,
        ) as exc:
            raise Unavailable(
                f"model variant {self.name} has no live replica right now ({type(exc).__name__}); retry"
            ) from exc

    async def embed(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        with tracing.span(
            "embedpool hop", kind=tracing.CLIENT, attributes={"embedpool.path": "serve_handle"}
        ):
            if tracing.on():
                tracing.mark(items)
            result: list[EmbedOutput | EmbedpoolError] = await self._call("embed", items)
        return result

    async def describe(self) -> VariantDescription:
        result: VariantDescription = await self._call("describe")
        return result

    async def count_tokens(
        self, texts: list[str], input_type: InputType, prompt: str | None, prompt_name: str | None
    ) -> list[int]:
        result: list[int] = await self._call("count_tokens", texts, input_type, prompt, prompt_name)
        return result

    async def ping(self) -> None:
        await self._call("ping")

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("stats")
        return result

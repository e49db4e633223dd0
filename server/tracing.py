"""OpenTelemetry traces of one call across the Router and replica processes.

Off unless an OTLP endpoint is given (the catalogue's `telemetry`, `embedpool serve
--otlp-endpoint`, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT). Off,
every helper here is a flag test and a shared no-op context manager: nothing is allocated on
the request path. On, each process (a Router, a replica) has its own provider, named by role
(`embedpool-router`, `embedpool-replica`), exporting in the background over OTLP/gRPC: a slow
or absent collector never holds a call back; spans are dropped, and a warning is logged once.

A caller's W3C `traceparent` (gRPC metadata, HTTP header) is continued; sampling follows it
(ParentBased), and new traces are recorded at the configured ratio. Between processes the
context travels as a `traceparent` string on each EmbedItem (`EmbedItem.trace`), so the direct
channel and the Serve handle carry it alike. Only the OpenTelemetry API and SDK are imported:
every layer (model included) may use this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("embedpool")
SERVICE_PREFIX = "embedpool-"
EXPORT_TIMEOUT_S = 2.0
SCHEDULE_DELAY_MS = 1000

CLIENT, SERVER = SpanKind.CLIENT, SpanKind.SERVER
_PROPAGATOR = TraceContextTextMapPropagator()
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()
_state: dict[str, Any] = {"on": False, "tracer": trace.NoOpTracer(), "provider": None}


def on() -> bool:
    return bool(_state["on"])


def endpoint_from_env(environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def configure(
    role: str,
    endpoint: str | None = None,
    sample_ratio: float | None = None,
    attributes: dict[str, str] | None = None,
) -> bool:
    """Turn tracing on for this process when an endpoint is given here or in the environment;
    returns whether it is on. A second call replaces the first (tests; one role per process)."""
    shutdown()
    endpoint = endpoint or endpoint_from_env()
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if sample_ratio is None:
        sample_ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    resource = Resource.create({"service.name": SERVICE_PREFIX + role, **(attributes or {})})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    insecure = not endpoint.startswith("https://")
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=insecure, timeout=EXPORT_TIMEOUT_S)
    provider.add_span_processor(
        BatchSpanProcessor(_WarnOnce(exporter, endpoint), schedule_delay_millis=SCHEDULE_DELAY_MS)
    )
    # The exporter logs every failed export with its traceback; _WarnOnce says it once instead.
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").setLevel(logging.CRITICAL)
    _state.update(on=True, tracer=provider.get_tracer("embedpool"), provider=provider)
    log.info(
        "tracing on: %s to %s, sampling %.3g of new traces", SERVICE_PREFIX + role, endpoint, sample_ratio
    )
    return True


def flush(timeout_s: float = 10.0) -> None:
    provider = _state["provider"]
    if provider is not None:
        provider.force_flush(int(timeout_s * 1000))


def shutdown() -> None:
    provider = _state["provider"]
    _state.update(on=False, tracer=trace.NoOpTracer(), provider=None)
    if provider is not None:
        provider.shutdown()


class _WarnOnce(SpanExporter):
    """The OTLP exporter, saying once (not per batch) that the collector cannot be reached."""

    def __init__(self, inner: Any, endpoint: str) -> None:
        self._inner = inner
        self._endpoint = endpoint
        self._warned = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            result: SpanExportResult = self._inner.export(spans)
        except Exception as exc:  # an exporter must never raise into the span processor
            result, detail = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        else:
            detail = "the export failed"
        if result != SpanExportResult.SUCCESS and not self._warned:
            self._warned = True
            log.warning(
                "traces are not reaching the OTLP collector at %s (%s); calls are answered as before, "
                "spans are dropped; this is said once",
                self._endpoint,
                detail,
            )
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


# -- context ---------------------------------------------------------------------------------------


def extract(pairs: Iterable[tuple[str, str | bytes]]) -> Context | None:
    """The caller's context from gRPC metadata or HTTP headers (a W3C traceparent), if any."""
    carrier = {
        k.lower(): v for k, v in pairs if isinstance(v, str) and k.lower() in ("traceparent", "tracestate")
    }
    return _PROPAGATOR.extract(carrier) if carrier else None


def traceparent() -> str:
    """The current span as a W3C traceparent, for the next process ("" when there is none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def mark(items: Iterable[Any]) -> None:
    """Stamp the current span's traceparent on each EmbedItem of a batch leaving for a replica."""
    value = traceparent()
    for item in items:
        item.trace = value


def span_context_of(traceparent_value: str) -> SpanContext | None:
    """The span a traceparent names (another process's), or None when it names none."""
    if not traceparent_value:
        return None
    ctx = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent_value})).get_span_context()
    return ctx if ctx.is_valid else None


def current() -> SpanContext | None:
    """The current span's context when it is recorded (what a batch links to), else None."""
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid and ctx.trace_flags.sampled else None


def log_ids() -> str:
    """` trace_id=... span_id=...` for a log line about the current call ("" outside a trace)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return ""
    return f" trace_id={ctx.trace_id:032x} span_id={ctx.span_id:016x}"


# -- spans ------------------------------------------------------------------------------------------


def span(
    name: str,
    *,
    parent: Context | SpanContext | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: dict[str, Any] | None = None,
    links: Sequence[SpanContext] = (),
) -> contextlib.AbstractContextManager[Span | None]:
    """A current span (None when tracing is off). `parent`: a caller's context, or the span
    context of another process's span; default: the current span."""
    if not _state["on"]:
        return _NULL
    if isinstance(parent, SpanContext):
        parent = trace.set_span_in_context(NonRecordingSpan(parent))
    return _state["tracer"].start_as_current_span(  # type: ignore[no-any-return]
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        links=[Link(c) for c in links],
    )


def call_span(
    method: str, front: str, carrier: Iterable[tuple[str, str | bytes]]
) -> contextlib.AbstractContextManager[Span | None]:
    """A front's span for one call, continuing the caller's traceparent if it sent one."""
    if not _state["on"]:
        return _NULL
    attributes = {"embedpool.front": front, "rpc.method": method}
    return span(f"embedpool {method}", parent=extract(carrier), kind=SERVER, attributes=attributes)


def end_call(target: Span | None, model: str, variant: str, code: str) -> None:
    """What the call resolved to and how it ended, on its front span."""
    set_attributes(target, model=model, variant=variant, code=code)


def start(name: str, attributes: dict[str, Any] | None = None) -> Span | None:
    """A span that is not made current (ended by its owner, e.g. a queue wait); None when off."""
    if not _state["on"]:
        return None
    started: Span = _state["tracer"].start_span(name, attributes=attributes)
    return started


def set_attributes(target: Span | None, **attributes: Any) -> None:
    if target is not None:
        target.set_attributes({f"embedpool.{k}": v for k, v in attributes.items()})

"""The model catalogue: which models the pool serves, and how each variant runs.

A catalogue is a YAML (or TOML) file validated by the pydantic models below.
Every model forbids unknown keys, so a misspelled key is reported with its path
(``models[0].variants[1].backnd: Extra inputs are not permitted``). Validation
errors are raised as ``ConfigError`` before anything is served.

This module is pure configuration: no torch, no Ray. The router uses
``Catalogue.resolve`` to pick a variant, the Ray layer uses
``Catalogue.deployment_name`` and the per-variant batching, autoscaling and
resources settings, and the model layer (``model_runner.load_runner``) loads a
``(ModelConfig, VariantConfig)`` pair.

The JSON schema of a catalogue (for generated deploy configs) is
``catalogue_json_schema()``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from embedpool.server.errors import ConfigError, InvalidArgument, NotFound
from embedpool.server.types import DeviceName, SimilarityName

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("default_catalogue.yaml")
CACHE_DIR_ENV = "EMBEDPOOL_CACHE_DIR"

DTypeName = Literal["float32", "float16", "bfloat16"]
QuantizeName = Literal["dynamic-int8", "weights-int8", "static-int8"]
# A variant's runtime: one of the wire's backends, or auto (the fastest exact CPU backend on
# each node, measured at first start; model/backend_choice.py).
VariantBackendName = Literal["torch", "onnx", "openvino", "custom", "auto"]

BACKENDS: tuple[str, ...] = ("torch", "onnx", "openvino", "custom")
DEVICES: tuple[str, ...] = ("cpu", "cuda")

# Names end up in Ray deployment names ("<model>--<variant>") and in metrics
# labels: letters, digits, '.', '_' and single '-' (a double '-' is the
# separator of deployment names, so it may not appear inside a name).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CLASS_PATH_RE = re.compile(r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_.]*$")
DEPLOYMENT_SEPARATOR = "--"


class _FieldError(ValueError):
    """A ValueError raised by a model validator about one of its fields.

    The formatter appends ``field`` to the error location, so the message
    names the key (``models[0].variants[0].dtype: ...``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value) or DEPLOYMENT_SEPARATOR in value:
        raise ValueError(
            f"{what} {value!r} may only hold letters, digits, '.', '_' and '-' (not '--'), "
            "and must start with a letter or digit"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=True)


class LimitsConfig(_Strict):
    """Request limits the router enforces and reports to clients (ListModels)."""

    max_inputs_per_request: int = Field(
        2048, ge=1, description="Most inputs one Embed, Similarity or CountTokens call may carry."
    )
    max_message_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest gRPC message, in bytes, the server accepts and sends.",
    )
    max_queued_requests: int = Field(
        1024,
        ge=1,
        description="Requests queued per model variant before new ones are refused with RESOURCE_EXHAUSTED.",
    )


class BatchingConfig(_Strict):
    """Server-side dynamic batching of one variant's requests (Ray Serve @serve.batch)."""

    max_batch_size: int = Field(
        64,
        ge=1,
        description="Most texts in one hop to a replica and in one model call (the router "
        "cuts bigger requests into chunks of this size).",
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0.0,
        description="How long a batch waits for more requests after the first arrives. 0 sends what is "
        "queued at once (batches still form under load).",
    )
    max_ongoing_requests: int = Field(
        8,
        ge=1,
        description="Requests one replica accepts at once (Ray Serve max_ongoing_requests); should cover "
        "the router's max_in_flight.",
    )
    max_batch_tokens: int = Field(
        16384,
        ge=1,
        description="Tokens one batch may hold. The router cuts hops to replicas by its estimate (UTF-8 "
        "bytes / 4 per text) and the model layer splits forward passes by exact padded tokens (rows x "
        "longest row). Smaller keeps a query quick beside bulk work on a CPU (4096 in the default "
        "catalogue: a one-text call beside a flood of long documents waited 0.47 s at p99, not 4 s); a GPU "
        "wants more.",
    )


class AutoscalingConfig(_Strict):
    """Ray Serve autoscaling of one variant's replicas."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept running (0 allows scale to zero).")
    max_replicas: int = Field(1, ge=1, description="Most replicas.")
    initial_replicas: int | None = Field(
        None, ge=0, description="Replicas started at deploy time; null means min_replicas."
    )
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Ongoing requests per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(
        30.0, ge=0, description="Seconds the load must stay high before replicas are added."
    )
    downscale_delay_s: float = Field(
        600.0, ge=0, description="Seconds the load must stay low before replicas are removed."
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise _FieldError(
                "min_replicas",
                f"{self.min_replicas} is more than max_replicas ({self.max_replicas})",
            )
        if self.initial_replicas is not None and not (
            self.min_replicas <= self.initial_replicas <= self.max_replicas
        ):
            raise _FieldError(
                "initial_replicas",
                f"{self.initial_replicas} is outside [min_replicas, max_replicas] = "
                f"[{self.min_replicas}, {self.max_replicas}]",
            )
        return self


class ResourcesConfig(_Strict):
    """Ray resources reserved per replica of one variant."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs per replica (fractions allowed).")
    num_gpus: float = Field(
        0.0, ge=0, description="GPUs per replica (fractions allowed); must be > 0 for cuda variants."
    )


class RouterConfig(_Strict):
    """The router (ingress) deployment: validation, variant choice, batching towards replicas."""

    num_replicas: int = Field(1, ge=1, description="Router replicas.")
    num_cpus: float = Field(0.0, ge=0, description="CPUs reserved per router replica.")
    max_in_flight: int = Field(
        2,
        ge=1,
        description="Batches the router keeps in flight per replica of a variant; further requests wait in "
        "the router and leave together as the next batch.",
    )
    direct: bool = Field(
        True,
        description="Send batches to replicas over a TCP port of their own (~0.1 ms per hop) rather than "
        "through Ray Serve handles (~7 ms on a 2-core machine); the handle stays the fallback. Replicas' "
        "ports must be reachable from the router's node (they listen on the node IP Ray uses).",
    )


class TelemetryConfig(_Strict):
    """OpenTelemetry traces (server/tracing.py). Off unless an endpoint is set here, by
    `embedpool serve --otlp-endpoint`, or in OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT."""

    otlp_endpoint: str | None = Field(
        None, description="OTLP/gRPC collector, e.g. http://collector:4317. null: the OTEL_ variables."
    )
    sample_ratio: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Share of new traces recorded; a caller's sampled traceparent is always followed. "
        "null: OTEL_TRACES_SAMPLER_ARG, else 1.0.",
    )


class VariantConfig(_Strict):
    """One way of serving a model: a backend on a device, with its own replicas."""

    name: str | None = Field(
        None,
        description="Variant name, unique within the model. Omitted: derived as "
        "'<backend>-<device>[-<file tag>]', e.g. 'torch-cpu', 'onnx-cpu-int8'.",
    )
    backend: VariantBackendName = Field(
        "torch",
        description="Inference runtime: torch, onnx, openvino, custom, or auto: the fastest exact one "
        "of torch, onnx and openvino (fp32, or bf16 on CPUs with bf16 instructions; each admitted only "
        "at min cosine 0.9999 to torch fp32) on each node's CPU, measured at first start and cached "
        "in cache_dir.",
    )
    device: DeviceName = Field("cpu", description="Where it runs: cpu or cuda.")
    dtype: DTypeName = Field(
        "float32",
        description="Weight and activation type for torch: float32, float16 or bfloat16 "
        "(float16/bfloat16 only on cuda). openvino: the inference precision, float32 (held at f32 "
        "on every CPU) or bfloat16 (on CPUs with bf16 instructions; elsewhere it runs f32). onnx takes "
        "float32; use file_name or quantize for other weight types.",
    )
    file_name: str | None = Field(
        None,
        description="The onnx/openvino file inside the model directory, e.g. "
        "'onnx/model_qint8_avx512_vnni.onnx' or 'openvino/openvino_model_qint8_quantized.xml'. "
        "null: the backend's default file, exported into cache_dir when missing.",
    )
    quantize: QuantizeName | None = Field(
        None,
        description="Make a quantized model when file_name is missing: 'dynamic-int8' (onnx: dynamic int8 "
        "quantization for this CPU's instruction set), 'weights-int8' (openvino: int8 weight "
        "compression) or 'static-int8' (openvino: weights and activations in int8, calibrated with NNCF "
        "on calibration_file or a built-in set; pays on CPUs with VNNI or AMX). Written once into cache_dir.",
    )
    calibration_file: str | None = Field(
        None,
        description="quantize static-int8 only: a UTF-8 text file, one calibration text per line, like the "
        "texts the pool will embed ('./' and '../' are relative to the catalogue file). null: the built-in "
        "set (server/model/calibration.py).",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for SentenceTransformer(model_kwargs=...), e.g. "
        "attn_implementation, provider, ov_config.",
    )
    class_path: str | None = Field(
        None,
        description="custom backend only: the class to load, 'package.module:ClassName' or "
        "'path/to/file.py:ClassName' (see server/model/custom.py for the protocol).",
    )
    class_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="custom backend only: keyword arguments for the class."
    )
    default: bool = Field(
        False,
        description="Serve requests that name no variant and state no preference. If no variant of the "
        "model is flagged, the first one is the default.",
    )
    threads: int | None = Field(
        None,
        ge=0,
        description="Intra-op threads for torch/onnx/openvino in each replica. null: "
        "resources.num_cpus rounded up, at least 1; 0: every core of the replica's machine "
        "(for a machine given to this one variant).",
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Dynamic batching.")
    autoscaling: AutoscalingConfig = Field(
        default_factory=AutoscalingConfig, description="Replica autoscaling."
    )
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig, description="Per-replica resources.")

    @field_validator("name")
    @classmethod
    def _check_variant_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, "variant name")

    @field_validator("class_path")
    @classmethod
    def _check_class_path(cls, value: str | None) -> str | None:
        if value is not None and not _CLASS_PATH_RE.match(value):
            raise ValueError(f"{value!r} is not of the form 'package.module:ClassName'")
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> VariantConfig:
        if self.backend == "custom":
            if self.class_path is None:
                raise _FieldError(
                    "class_path", "the custom backend needs class_path ('package.module:Class')"
                )
            if self.file_name is not None or self.quantize is not None:
                raise _FieldError(
                    "file_name" if self.file_name is not None else "quantize",
                    "is not used by the custom backend (pass settings in class_kwargs)",
                )
        else:
            if self.class_path is not None:
                raise _FieldError("class_path", f"is only used by the custom backend, not {self.backend}")
            if self.class_kwargs:
                raise _FieldError("class_kwargs", f"is only used by the custom backend, not {self.backend}")
        if self.backend == "auto":
            for key in ("file_name", "quantize"):
                if getattr(self, key) is not None:
                    raise _FieldError(
                        key, "is not used by backend auto (it serves exact fp32); name the backend"
                    )
            if self.model_kwargs:
                raise _FieldError(
                    "model_kwargs", "differ from backend to backend; name the backend to pass them (not auto)"
                )
            if self.device != "cpu":
                raise _FieldError(
                    "device", "backend auto chooses among CPU runtimes; on cuda name the backend"
                )
        if self.dtype != "float32":
            if self.backend == "openvino" and self.dtype == "bfloat16":
                if self.file_name is not None or self.quantize is not None:
                    raise _FieldError(
                        "dtype",
                        "bfloat16 is the precision of the openvino fp32 model; drop file_name/quantize",
                    )
            elif self.backend in ("onnx", "openvino", "auto"):
                raise _FieldError(
                    "dtype",
                    f"{self.dtype} is not available for {self.backend}; use float32, or name a "
                    "converted file with file_name / quantize",
                )
            if self.backend == "torch" and self.device != "cuda":
                raise _FieldError(
                    "dtype", f"{self.dtype} needs device cuda for the torch backend (CPU runs float32)"
                )
        if self.file_name is not None and self.backend not in ("onnx", "openvino"):
            raise _FieldError(
                "file_name", f"is only used by the onnx and openvino backends, not {self.backend}"
            )
        if self.quantize == "dynamic-int8":
            if self.backend != "onnx":
                raise _FieldError("quantize", "'dynamic-int8' is only available for the onnx backend")
            if self.device != "cpu":
                raise _FieldError("quantize", "'dynamic-int8' models run on CPU; use device cpu")
        if self.quantize == "static-int8" and self.backend != "openvino":
            raise _FieldError("quantize", "'static-int8' is only available for the openvino backend")
        if self.calibration_file is not None and self.quantize != "static-int8":
            raise _FieldError("calibration_file", "is only used with quantize 'static-int8'")
        if self.quantize == "weights-int8" and self.backend != "openvino":
            raise _FieldError("quantize", "'weights-int8' is only available for the openvino backend")
        if self.device == "cuda" and self.resources.num_gpus <= 0:
            raise _FieldError("resources.num_gpus", "must be more than 0 for a cuda variant")
        if self.backend == "openvino" and self.device == "cuda":
            raise _FieldError("device", "the openvino backend runs on cpu here")
        return self

    # -- derived values -------------------------------------------------------------------------

    @property
    def file_tag(self) -> str | None:
        """A short tag for the weights file, used in derived names: 'int8', 'qint8-avx512-vnni'."""
        if self.file_name:
            stem = Path(self.file_name).stem
            for prefix in ("openvino_model_", "model_", "openvino_model", "model"):
                if stem.startswith(prefix):
                    stem = stem[len(prefix) :]
                    break
            tag = re.sub(r"[^A-Za-z0-9.]+", "-", stem).strip("-.").lower()
            return tag or None
        if self.quantize is not None:
            return "qint8" if self.quantize == "static-int8" else "int8"
        if self.dtype != "float32":
            return {"float16": "fp16", "bfloat16": "bf16"}[self.dtype]
        return None

    def derived_name(self) -> str:
        parts: list[str] = [self.backend, self.device]
        if self.file_tag:
            parts.append(self.file_tag)
        return "-".join(parts)

    @property
    def effective_threads(self) -> int:
        """Intra-op threads for one replica: threads (0: every core), or num_cpus rounded up (at least 1)."""
        if self.threads == 0:
            return os.cpu_count() or 1
        if self.threads is not None:
            return self.threads
        return max(1, int(-(-self.resources.num_cpus // 1)))


class ModelConfig(_Strict):
    """One model and the variants it is served with."""

    name: str = Field(description="Model name clients put in ModelSelector.model.")
    source: str = Field(
        description="Where the weights are: 'package:<python package>' (its get_model_path(), or "
        "<package dir>/model), a local directory ('./' and '../' are relative to the catalogue file), "
        "or a Hugging Face hub id."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) for hub ids.")
    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="Named prompts, name to text, merged over the model's own prompts. An empty text "
        "removes a prompt of the model.",
    )
    query_prompt_name: str | None = Field(
        None,
        description="Prompt used for input_type=query. null: the prompt named 'query', if the model has it.",
    )
    document_prompt_name: str | None = Field(
        None,
        description="Prompt used for input_type=document. null: the prompt named 'document' (or "
        "'passage', 'corpus'), if the model has one.",
    )
    max_seq_length: int | None = Field(
        None,
        ge=1,
        description="Override of the model's max input tokens (special tokens and prompt included).",
    )
    truncate_dim: int | None = Field(
        None, ge=1, description="Matryoshka: serve only the first N dimensions by default."
    )
    similarity: SimilarityName | None = Field(
        None,
        description="The similarity the model was trained for: cosine, dot_product or euclidean. "
        "null: the model's own setting (cosine when it has none).",
    )
    variants: list[VariantConfig] = Field(
        default_factory=lambda: [VariantConfig()],
        min_length=1,
        description="The ways this model is served. Default: one torch-cpu variant.",
    )

    @field_validator("name")
    @classmethod
    def _check_model_name(cls, value: str) -> str:
        return _check_name(value, "model name")

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("source may not be empty")
        if value.startswith("package:") and not re.match(r"^package:[A-Za-z_][A-Za-z0-9_.]*$", value):
            raise ValueError(f"{value!r}: expected 'package:<importable python package>'")
        return value

    @model_validator(mode="after")
    def _name_variants(self) -> ModelConfig:
        seen: dict[str, int] = {}
        for index, variant in enumerate(self.variants):
            if variant.name is None:
                variant.name = variant.derived_name()
            if variant.name in seen:
                raise _FieldError(
                    f"variants[{index}].name",
                    f"{variant.name!r} is also the name of variants[{seen[variant.name]}]; give one of "
                    "them a name",
                )
            seen[variant.name] = index
        flagged = [i for i, v in enumerate(self.variants) if v.default]
        if len(flagged) > 1:
            raise _FieldError("variants", f"variants {flagged} are all flagged default; flag at most one")
        return self

    @property
    def default_variant(self) -> VariantConfig:
        for variant in self.variants:
            if variant.default:
                return variant
        return self.variants[0]

    def variant(self, name: str) -> VariantConfig:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise NotFound(
            f"model {self.name!r} has no variant {name!r}; available: "
            + ", ".join(v.name or "" for v in self.variants)
        )

    @property
    def variant_names(self) -> list[str]:
        return [v.name or "" for v in self.variants]


class Catalogue(_Strict):
    """The pool's catalogue: models, limits and the export cache."""

    default_model: str | None = Field(
        None, description="Model served when a request names none. null: the first model."
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request limits.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="The router deployment.")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig, description="Traces.")
    cache_dir: str | None = Field(
        None,
        description="Directory for ONNX/OpenVINO exports and quantized files. null: $EMBEDPOOL_CACHE_DIR, "
        "else ~/.cache/embedpool.",
    )
    models: list[ModelConfig] = Field(min_length=1, description="The models served.")

    @model_validator(mode="after")
    def _check_models(self) -> Catalogue:
        seen: dict[str, int] = {}
        for index, model in enumerate(self.models):
            if model.name in seen:
                raise _FieldError(
                    f"models[{index}].name",
                    f"{model.name!r} is also the name of models[{seen[model.name]}]",
                )
            seen[model.name] = index
        if self.default_model is not None and self.default_model not in seen:
            raise _FieldError(
                "default_model",
                f"{self.default_model!r} is not one of the models: {', '.join(seen)}",
            )
        return self

    # -- lookups --------------------------------------------------------------------------------

    @property
    def default_model_name(self) -> str:
        return self.default_model if self.default_model is not None else self.models[0].name

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: str = "") -> ModelConfig:
        """The model called ``name``; empty means the default model. Unknown: NotFound."""
        wanted = name or self.default_model_name
        for model in self.models:
            if model.name == wanted:
                return model
        raise NotFound(f"unknown model {wanted!r}; available: {', '.join(self.model_names)}")

    def resolve(
        self,
        model: str = "",
        variant: str = "",
        backend: str | None = None,
        device: str | None = None,
    ) -> tuple[ModelConfig, VariantConfig]:
        """Pick the model and variant that serve a request. See ``resolve_variant``."""
        model_cfg = self.model(model)
        return model_cfg, resolve_variant(model_cfg, variant, backend, device)

    def deployment_name(self, model: str | ModelConfig, variant: str | VariantConfig | None) -> str:
        """A Ray-safe deployment name for a variant: '<model>--<variant>'."""
        model_cfg = model if isinstance(model, ModelConfig) else self.model(model)
        variant_name = variant.name if isinstance(variant, VariantConfig) else variant
        variant_cfg = model_cfg.variant(variant_name or "")
        return deployment_name(model_cfg.name, variant_cfg.name or "")

    def iter_variants(self) -> Iterator[tuple[ModelConfig, VariantConfig]]:
        """Every (model, variant) pair, in catalogue order."""
        for model in self.models:
            for variant in model.variants:
                yield model, variant

    def resolved_cache_dir(self) -> Path:
        """cache_dir, else $EMBEDPOOL_CACHE_DIR, else ~/.cache/embedpool (not created here)."""
        return resolve_cache_dir(self.cache_dir)


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """cache_dir, else $EMBEDPOOL_CACHE_DIR, else ~/.cache/embedpool (not created here)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/embedpool").expanduser()


def deployment_name(model_name: str, variant_name: str) -> str:
    """'<model>--<variant>': names are validated so this is unique and Ray-safe."""
    return f"{model_name}{DEPLOYMENT_SEPARATOR}{variant_name}"


def resolve_variant(
    model: ModelConfig,
    variant: str = "",
    backend: str | None = None,
    device: str | None = None,
) -> VariantConfig:
    """Choose a variant of ``model`` for a request. Pure: no I/O, no torch.

    A named ``variant`` must exist (NotFound names the available ones).
    Otherwise ``backend`` and ``device`` are preferences (None or '' means
    none): the variant matching both wins, then one matching the backend, then
    one matching the device, else the model's default variant. Among equally
    good matches the default variant wins, then catalogue order.
    """
    if variant:
        return model.variant(variant)
    backend = backend or None
    device = device or None
    if backend is not None and backend not in BACKENDS:
        raise InvalidArgument(f"unknown backend {backend!r}; expected one of: {', '.join(BACKENDS)}")
    if device is not None and device not in DEVICES:
        raise InvalidArgument(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")
    default = model.default_variant
    if backend is None and device is None:
        return default

    def score(v: VariantConfig) -> int:
        backend_match = backend is not None and v.backend == backend
        device_match = device is not None and v.device == device
        # both > backend only > device only > neither
        return 2 * backend_match + device_match

    best = default
    best_score = score(default)
    for candidate in model.variants:
        candidate_score = score(candidate)
        if candidate_score > best_score:
            best, best_score = candidate, candidate_score
    return best


# -- loading ------------------------------------------------------------------------------------


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = item["msg"]
        ctx_error = (item.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):
            # "variants[1].name" style fields already carry their own path pieces
            loc = loc + tuple(_split_field_path(ctx_error.field))
            message = str(ctx_error)
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{_format_loc(loc)}: {message}")
    return "; ".join(lines)


def _split_field_path(path: str) -> list[int | str]:
    parts: list[int | str] = []
    for piece in path.split("."):
        match = re.match(r"^([^\[]+)((?:\[\d+\])*)$", piece)
        if not match:
            parts.append(piece)
            continue
        parts.append(match.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    return parts


def catalogue_from_dict(data: Any, *, origin: str = "catalogue", base_dir: Path | None = None) -> Catalogue:
    """Validate already-parsed catalogue data. Errors: ConfigError naming the key path.

    ``base_dir`` resolves sources, cache_dir and custom class files written as
    './x' or '../x' (relative to the catalogue file).
    """
    if data is None:
        raise ConfigError(f"{origin}: the catalogue is empty; it needs at least a 'models' list")
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the catalogue must be a mapping, not {type(data).__name__}")
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_format_validation_error(exc)}") from None
    if base_dir is not None:
        for model in catalogue.models:
            if model.source.startswith(("./", "../")):
                model.source = str((base_dir / model.source).resolve())
            for variant in model.variants:
                path, sep, attr = (variant.class_path or "").rpartition(":")
                if sep and path.endswith(".py") and path.startswith(("./", "../")):
                    variant.class_path = f"{(base_dir / path).resolve()}:{attr}"
                if variant.calibration_file and variant.calibration_file.startswith(("./", "../")):
                    variant.calibration_file = str((base_dir / variant.calibration_file).resolve())
        if catalogue.cache_dir and catalogue.cache_dir.startswith(("./", "../")):
            catalogue.cache_dir = str((base_dir / catalogue.cache_dir).resolve())
    return catalogue


def load_catalogue(path: str | os.PathLike[str] | None = None) -> Catalogue:
    """Load and validate a catalogue file (.yaml/.yml, or .toml); None loads the built-in default.

    Raises ConfigError (naming the file and the bad key path) when the file is
    missing, unparsable or invalid.
    """
    file = Path(path) if path is not None else DEFAULT_CATALOGUE_PATH
    origin = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{origin}: catalogue file not found") from None
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read the catalogue: {exc}") from None
    suffix = file.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # Python 3.10
            try:
                import tomli as tomllib
            except ModuleNotFoundError:
                raise ConfigError(f"{origin}: reading TOML needs Python 3.11+ or the tomli package") from None
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{origin}: invalid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml", ".json", ""):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{origin}: invalid YAML: {exc}") from None
    else:
        raise ConfigError(f"{origin}: unknown catalogue format {suffix!r}; use .yaml, .yml or .toml")
    return catalogue_from_dict(data, origin=origin, base_dir=file.resolve().parent)


def catalogue_json_schema() -> dict[str, Any]:
    """The JSON schema of a catalogue file, with each field's description."""
    return Catalogue.model_json_schema()

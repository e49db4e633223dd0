"""Ray Serve config files (and KubeRay ``serveConfigV2``) generated from a catalogue.

The committed files under deploy/ are this module's output; each starts with the
command that regenerates it, and a test fails when a file and its command disagree::

    python -m embedpool.server.serving.deploy_config --catalogue deploy/catalogue-gpu.yaml \\
        --router-selector embedpool/node-pool=cpu --cpu-selector embedpool/node-pool=cpu \\
        --out deploy/serve-gpu.yaml --rayservice deploy/k8s/rayservice.yaml
    ... --check     # exit 1 (and say which file) when a committed file is stale

The Serve config holds one application, ``embedpool`` (route prefix ``/embedpool``),
built by ``embedpool.server.serving.app:build_app`` from the catalogue given inline in
``args.catalogue``: the catalogue stays the one place where models, variants,
batching, autoscaling and resources are set. The config adds what is about the
cluster rather than the models: the pool's own gRPC port, Ray's gRPC proxy
(``grpc_options``), where proxies run, environment variables, and placement:
label selectors that keep the Router and the CPU variants on CPU nodes and the
GPU variants on GPU nodes, written as ``deployments`` overrides of
``ray_actor_options`` (Serve replaces a deployment's ray_actor_options with the
override, so the override repeats num_cpus/num_gpus from the catalogue).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from embedpool.server.config.catalogue import Catalogue, catalogue_from_dict
from embedpool.server.errors import ConfigError
from embedpool.server.serving.app import (
    APP_NAME,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    GRPC_SERVICER_FUNCTIONS,
    SERVING_ENV,
)

IMPORT_PATH = "embedpool.server.serving.app:build_app"
ROUTER_DEPLOYMENT = "Router"
DEFAULT_RAY_GRPC_PORT = 9000
PROXY_LOCATIONS = ("EveryNode", "HeadOnly", "Disabled")
MODULE = "embedpool.server.serving.deploy_config"
HEADER_MARK = "# Regenerate: "

# The line in a RayService manifest whose block scalar holds the Serve config.
_SERVE_CONFIG_LINE = re.compile(r"^(?P<indent>[ ]*)serveConfigV2:[ ]*\|[-+]?[ ]*$")


@dataclass
class DeployOptions:
    """What a Serve config says beyond the catalogue."""

    grpc_port: int = DEFAULT_GRPC_PORT
    grpc_host: str = "0.0.0.0"
    #: The OpenAI-compatible HTTP port beside it (0: off).
    http_port: int = DEFAULT_HTTP_PORT
    #: OTLP/gRPC collector for traces (the catalogue's telemetry.otlp_endpoint); None: as the catalogue says.
    otlp_endpoint: str | None = None
    #: Ray Serve's gRPC proxy port; 0 leaves grpc_options out (no proxy gRPC).
    ray_grpc_port: int = DEFAULT_RAY_GRPC_PORT
    enable_reflection: bool = True
    proxy_location: str = "EveryNode"
    #: runtime_env env_vars of the application (every replica gets them).
    env_vars: dict[str, str] = field(default_factory=dict)
    #: Ray node label selectors (``ray_actor_options.label_selector``).
    router_selector: dict[str, str] = field(default_factory=dict)
    cpu_selector: dict[str, str] = field(default_factory=dict)
    gpu_selector: dict[str, str] = field(default_factory=dict)
    #: Serve's max_replicas_per_node for the Router (0: no limit).
    router_max_per_node: int = 0
    access_log: bool = False


def catalogue_data(catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue as it goes into ``args.catalogue``: the keys its author set, plus derived
    variant names (so deployment names are visible in the config)."""
    data: dict[str, Any] = catalogue.model_dump(mode="json", exclude_unset=True)
    for model, model_out in zip(catalogue.models, data["models"], strict=True):
        given = model_out.get("variants") or [{} for _ in model.variants]  # omitted: the default variant
        model_out["variants"] = [
            {"name": v.name, **out} for v, out in zip(model.variants, given, strict=True)
        ]
    return data


def _with_tracing(data: dict[str, Any], endpoint: str | None) -> dict[str, Any]:
    if endpoint:
        data["telemetry"] = {**data.get("telemetry", {}), "otlp_endpoint": endpoint}
    return data


def _check_selector(what: str, selector: dict[str, str]) -> None:
    """Ray's own check of label selector syntax (keys and values as Kubernetes labels)."""
    try:
        from ray._private.label_utils import validate_label_selector
    except ImportError:  # pragma: no cover - a private module; Serve checks again at deploy time
        return
    problem = validate_label_selector(selector)
    if problem:
        raise ConfigError(f"{what}: {problem}")


def serve_config(catalogue: Catalogue, options: DeployOptions | None = None) -> dict[str, Any]:
    """A Serve config (``ray.serve.schema.ServeDeploySchema``) serving ``catalogue`` as one app."""
    opts = options or DeployOptions()
    if opts.proxy_location not in PROXY_LOCATIONS:
        raise ConfigError(
            f"proxy_location must be one of {', '.join(PROXY_LOCATIONS)}, not {opts.proxy_location!r}"
        )
    for what, selector in (
        ("router_selector", opts.router_selector),
        ("cpu_selector", opts.cpu_selector),
        ("gpu_selector", opts.gpu_selector),
    ):
        _check_selector(what, selector)

    config: dict[str, Any] = {"proxy_location": opts.proxy_location}
    if opts.ray_grpc_port:
        config["grpc_options"] = {
            "port": opts.ray_grpc_port,
            "grpc_servicer_functions": list(GRPC_SERVICER_FUNCTIONS),
            "enable_reflection": opts.enable_reflection,
        }
    app: dict[str, Any] = {
        "name": APP_NAME,
        "route_prefix": f"/{APP_NAME}",
        "import_path": IMPORT_PATH,
    }
    app["runtime_env"] = {"env_vars": SERVING_ENV | dict(opts.env_vars)}
    app["logging_config"] = {"enable_access_log": opts.access_log}
    app["args"] = {
        "grpc_port": opts.grpc_port,
        "grpc_host": opts.grpc_host,
        "http_port": opts.http_port,
        "catalogue": _with_tracing(catalogue_data(catalogue), opts.otlp_endpoint),
    }

    deployments: list[dict[str, Any]] = []
    if opts.router_selector or opts.router_max_per_node:
        router: dict[str, Any] = {
            "name": ROUTER_DEPLOYMENT,
            "ray_actor_options": {"num_cpus": catalogue.router.num_cpus},
        }
        if opts.router_selector:
            router["ray_actor_options"]["label_selector"] = dict(opts.router_selector)
        if opts.router_max_per_node:
            router["max_replicas_per_node"] = opts.router_max_per_node
        deployments.append(router)
    for model, variant in catalogue.iter_variants():
        selector = opts.gpu_selector if variant.device == "cuda" else opts.cpu_selector
        if not selector:
            continue
        deployments.append(
            {
                "name": catalogue.deployment_name(model, variant),
                "ray_actor_options": {
                    "num_cpus": variant.resources.num_cpus,
                    "num_gpus": variant.resources.num_gpus,
                    "label_selector": dict(selector),
                },
            }
        )
    if deployments:
        app["deployments"] = deployments
    config["applications"] = [app]
    validate_serve_config(config)
    return config


def validate_serve_config(config: dict[str, Any]) -> None:
    """Check a config as ``serve deploy`` would (ServeDeploySchema) and its catalogue as build_app would."""
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        raise ConfigError(f"not a valid Serve config: {exc}") from None
    for app in config.get("applications", []):
        if app.get("import_path") == IMPORT_PATH and "catalogue" in app.get("args", {}):
            catalogue_from_dict(
                app["args"]["catalogue"], origin=f"applications[{app['name']}].args.catalogue"
            )


# ---- files ------------------------------------------------------------------------------------


def read_catalogue(path: str | Path) -> Catalogue:
    """Validate a catalogue file without resolving its relative paths: a Serve config is read on
    other machines, where './x' means the Ray worker's working directory."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the catalogue: {exc}") from None
    if file.suffix.lower() == ".toml":
        import tomllib

        data: Any = tomllib.loads(text)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: invalid YAML: {exc}") from None
    return catalogue_from_dict(data, origin=str(file))


def render_yaml(config: dict[str, Any], command: list[str], source: str) -> str:
    """The config as YAML, headed by where it comes from and the command that regenerates it."""
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)
    header = (
        f"# Ray Serve config for the embedpool pool, generated from {source}.\n"
        "# Do not edit: change the catalogue (or the options below) and regenerate.\n"
        + format_command(command)
    )
    return header + body


def embed_in_rayservice(manifest: str, serve_yaml: str) -> str:
    """Replace the ``serveConfigV2: |`` block of a RayService manifest with ``serve_yaml``,
    keeping every other line (and comment) of the manifest as it is."""
    lines = manifest.splitlines(keepends=True)
    for index, line in enumerate(lines):
        match = _SERVE_CONFIG_LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        indent = len(match.group("indent")) + 2
        end = index + 1
        while end < len(lines):
            text = lines[end].rstrip("\n")
            if text.strip() and len(text) - len(text.lstrip(" ")) < indent:
                break
            end += 1
        # Blank lines at the end of the block belong to what follows it.
        while end > index + 1 and not lines[end - 1].strip():
            end -= 1
        block = [(" " * indent + ln if ln else "") + "\n" for ln in serve_yaml.rstrip("\n").split("\n")]
        return "".join(lines[: index + 1] + block + lines[end:])
    raise ConfigError("the manifest has no 'serveConfigV2: |' block to fill")


# ---- command line ----------------------------------------------------------------------------


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Write a Ray Serve config (and a RayService's serveConfigV2) for a catalogue.",
    )
    p.add_argument("--catalogue", required=True, help="catalogue file (YAML/TOML)")
    p.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT, help="the pool's own gRPC port")
    p.add_argument("--grpc-host", default="0.0.0.0", help="the pool's listen address (gRPC and HTTP)")
    p.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="the OpenAI-compatible HTTP port (0: off)"
    )
    p.add_argument(
        "--ray-grpc-port",
        type=int,
        default=DEFAULT_RAY_GRPC_PORT,
        help="Ray Serve's gRPC proxy port (0: none)",
    )
    p.add_argument("--otlp-endpoint", default=None, help="OTLP/gRPC collector for traces (default: off)")
    p.add_argument("--no-reflection", action="store_true", help="no reflection on Ray's gRPC proxy")
    p.add_argument("--proxy-location", default="EveryNode", choices=PROXY_LOCATIONS)
    p.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VALUE")
    p.add_argument("--router-selector", action="append", type=_key_value, default=[], metavar="LABEL=VALUE")
    p.add_argument("--cpu-selector", action="append", type=_key_value, default=[], metavar="LABEL=VALUE")
    p.add_argument("--gpu-selector", action="append", type=_key_value, default=[], metavar="LABEL=VALUE")
    p.add_argument("--router-max-per-node", type=int, default=0, help="max Router replicas per node (0: any)")
    p.add_argument("--access-log", action="store_true", help="keep Serve's per-request access log")
    p.add_argument("--out", help="write the Serve config here (default: stdout)")
    p.add_argument("--rayservice", help="also fill this RayService manifest's serveConfigV2 block")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is not up to date")
    return p


def options_from_args(args: argparse.Namespace) -> DeployOptions:
    return DeployOptions(
        grpc_port=args.grpc_port,
        grpc_host=args.grpc_host,
        http_port=args.http_port,
        otlp_endpoint=args.otlp_endpoint,
        ray_grpc_port=args.ray_grpc_port,
        enable_reflection=not args.no_reflection,
        proxy_location=args.proxy_location,
        env_vars=dict(args.env),
        router_selector=dict(args.router_selector),
        cpu_selector=dict(args.cpu_selector),
        gpu_selector=dict(args.gpu_selector),
        router_max_per_node=args.router_max_per_node,
        access_log=args.access_log,
    )


def command_line(args: argparse.Namespace) -> list[str]:
    """The canonical command for these arguments (what a generated file's header shows)."""
    defaults = parser().parse_args(["--catalogue", "x"])
    parts = ["python", "-m", MODULE, "--catalogue", args.catalogue]
    for name in (
        "grpc_port",
        "grpc_host",
        "http_port",
        "otlp_endpoint",
        "ray_grpc_port",
        "proxy_location",
        "router_max_per_node",
    ):
        value = getattr(args, name)
        if value != getattr(defaults, name):
            parts += [f"--{name.replace('_', '-')}", str(value)]
    for name in ("no_reflection", "access_log"):
        if getattr(args, name):
            parts.append(f"--{name.replace('_', '-')}")
    for name in ("env", "router_selector", "cpu_selector", "gpu_selector"):
        for key, value in getattr(args, name):
            parts += [f"--{name.replace('_', '-')}", f"{key}={value}"]
    for name in ("out", "rayservice"):
        if getattr(args, name):
            parts += [f"--{name}", getattr(args, name)]
    return parts


def format_command(parts: list[str]) -> str:
    """``parts`` as shell comment lines: the first with HEADER_MARK, one option per line after it."""
    groups: list[list[str]] = [parts[:3]]
    for part in parts[3:]:
        if part.startswith("--"):
            groups.append([part])
        else:
            groups[-1].append(part)
    return HEADER_MARK + " \\\n#     ".join(shlex.join(group) for group in groups) + "\n"


def header_command(text: str) -> list[str]:
    """The argv recorded in a generated file's header (see format_command)."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith(HEADER_MARK):
            command = line[len(HEADER_MARK) :]
            while command.endswith("\\"):
                command = command[:-1] + next(lines, "").lstrip("#")
            return shlex.split(command)
    raise ConfigError(f"no '{HEADER_MARK.strip()}' line: not a generated file")


def generate(args: argparse.Namespace) -> dict[str, str]:
    """The files (path -> text) these arguments produce; '-' is stdout."""
    catalogue = read_catalogue(args.catalogue)
    config = serve_config(catalogue, options_from_args(args))
    text = render_yaml(config, command_line(args), args.catalogue)
    files = {args.out or "-": text}
    if args.rayservice:
        manifest = Path(args.rayservice).read_text(encoding="utf-8")
        files[args.rayservice] = embed_in_rayservice(manifest, text)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        files = generate(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for path, text in files.items():
        if path == "-":
            if not args.check:
                sys.stdout.write(text)
            continue
        file = Path(path)
        current = file.read_text(encoding="utf-8") if file.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text, encoding="utf-8")
            print(f"wrote {path}", file=sys.stderr)
    if stale:
        command = shlex.join(command_line(args))
        print(f"out of date: {', '.join(stale)}; regenerate with: {command}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

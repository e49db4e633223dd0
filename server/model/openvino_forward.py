"""An OpenVINO model's forward pass on its own infer request, around optimum's wrapper.

optimum's OVModel.forward turns the padded arrays into torch tensors and back, and calls the
compiled model, which copies the inputs into a fresh request and the outputs into a new dict.
Here the token arrays go to one kept infer request as they are (shared, not copied), and the
token embeddings it returns go through the same sentence-transformers modules after the
Transformer (Pooling, Dense, ...): the same numbers, a one-text forward ~0.3-0.6 ms sooner
(BENCHMARKS.md). Models this does not fit keep sentence-transformers' own forward.

Beside the model optimum compiled (one stream on every thread of the budget: the fastest
for one batch at a time), a CPU model can also run on ``STREAMS`` streams that share the
budget, each thread with an infer request of its own (``__call__(..., stream=True)``): two
batches at once on two streams of one thread ran 1.14x the texts/s of the same batches one
after another on two threads, where every forward waits on the slowest of its threads
(BENCHMARKS.md). The replica decides which batch runs where (serving/replica.py).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

_OUTPUT = "last_hidden_state"
# Batches the streamed model runs at once: the Router keeps two batches out per replica
# (router.max_in_flight), and on the 2-core machines measured each stream then has a core.
STREAMS = 2


def _output_index(compiled: Any) -> int:
    """Which of a compiled model's outputs holds the token embeddings."""
    names = [port.get_names() for port in compiled.outputs]
    return next((i for i, n in enumerate(names) if _OUTPUT in n), 0)


def _text_config(module: Any) -> dict[str, Any]:
    config: dict[str, Any] = getattr(module, "modality_config", {}).get("text") or {}
    return config


class DirectForward:
    def __init__(self, model: Any, torch: Any) -> None:
        self._model = model
        self._ov = model[0].auto_model
        self._torch = torch
        self._compiled: Any = None
        self._request: Any = None
        self._output = 0
        self._streamed: Any = None  # the model compiled on STREAMS streams, made on first use
        self._streamed_config: dict[str, str] = {}
        self._compiling = threading.Lock()
        self._local = threading.local()  # each stream thread's infer request

    @classmethod
    def fitting(cls, model: Any, backend: str, torch: Any) -> DirectForward | None:
        """The direct forward for a plain text model on optimum's OpenVINO, else None."""
        if backend != "openvino" or len(model) < 2:
            return None
        first = model[0]
        ov = getattr(first, "auto_model", None)
        config = _text_config(first)
        output = config.get("method_output_name")
        if (
            ov is None
            or not hasattr(ov, "compile")
            or not hasattr(ov, "input_names")
            or config.get("method", "forward") != "forward"
            or output not in (_OUTPUT, (_OUTPUT,), [_OUTPUT])
            or getattr(first, "module_output_name", "token_embeddings") != "token_embeddings"
            or getattr(getattr(ov, "config", None), "output_hidden_states", False)
        ):
            return None
        return cls(model, torch)

    def _ready(self) -> Any:
        """The infer request of the model as compiled now (set_threads recompiles it)."""
        if self._ov.request is None:
            self._ov.compile()
        compiled = self._ov.request
        if compiled is not self._compiled:
            self._output = _output_index(compiled)
            self._request = compiled.create_infer_request()
            self._compiled = compiled
        return self._request

    def stream_slots(self) -> int:
        """Batches that can run at once on streams: STREAMS on a CPU budget of at least as many
        threads (one stream per thread at least), else 0."""
        config = getattr(self._ov, "ov_config", None) or {}
        device = str(getattr(self._ov, "_device", "CPU")).upper()
        threads = int(config.get("INFERENCE_NUM_THREADS", "0") or 0)
        return STREAMS if device == "CPU" and threads >= STREAMS else 0

    def _stream_request(self) -> tuple[Any, int]:
        """This thread's infer request on the streamed model, compiled with the budget optimum's
        model has now (set_threads may have changed it since), and the index of its output."""
        config = {key: str(value) for key, value in self._ov.ov_config.items() if key != "PERFORMANCE_HINT"}
        config["NUM_STREAMS"] = str(STREAMS)
        with self._compiling:
            if self._streamed is None or config != self._streamed_config:
                import openvino

                self._streamed = openvino.Core().compile_model(self._ov.model, "CPU", config)
                self._streamed_config = config
            compiled = self._streamed
        local = self._local
        if getattr(local, "compiled", None) is not compiled:
            local.output = _output_index(compiled)
            local.request, local.compiled = compiled.create_infer_request(), compiled
        return local.request, local.output

    def accepts(self, features: dict[str, Any]) -> bool:
        """Whether these are the fast tokenizer's padded arrays, with every input the model takes."""
        return all(isinstance(features.get(name), np.ndarray) for name in self._ov.input_names)

    def __call__(self, features: dict[str, np.ndarray], stream: bool = False) -> np.ndarray:
        """Sentence embeddings (float32) of padded token arrays (input_ids, attention_mask, ...);
        with ``stream``, on this thread's stream (any number of threads at once), else on the
        model optimum compiled (one thread at a time)."""
        torch = self._torch
        if stream:
            request, output = self._stream_request()
        else:
            request = self._ready()
            output = self._output
        inputs = {name: features[name] for name in self._ov.input_names}
        request.infer(inputs, share_inputs=True, share_outputs=True)
        # Shared with the request until its next infer: the modules below make new arrays from it.
        hidden = request.get_output_tensor(output).data
        tensors: dict[str, Any] = {key: torch.from_numpy(value) for key, value in features.items()}
        tensors["token_embeddings"] = torch.from_numpy(hidden)
        with torch.inference_mode():
            for index in range(1, len(self._model)):
                tensors = self._model[index](tensors)
            embeddings = tensors["sentence_embedding"]
            if embeddings.dtype != torch.float32:
                embeddings = embeddings.float()
            vectors: np.ndarray = embeddings.numpy().copy()
        return vectors

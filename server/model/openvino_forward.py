"""An OpenVINO model's forward pass on its own infer request, around optimum's wrapper.

optimum's OVModel.forward turns the padded arrays into torch tensors and back, and calls the
compiled model, which copies the inputs into a fresh request and the outputs into a new dict.
Here the token arrays go to one kept infer request as they are (shared, not copied), and the
token embeddings it returns go through the same sentence-transformers modules after the
Transformer (Pooling, Dense, ...): the same numbers, a one-text forward ~0.3-0.6 ms sooner
(BENCHMARKS.md). Models this does not fit keep sentence-transformers' own forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_OUTPUT = "last_hidden_state"


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
            names = [port.get_names() for port in compiled.outputs]
            self._output = next((i for i, n in enumerate(names) if _OUTPUT in n), 0)
            self._request = compiled.create_infer_request()
            self._compiled = compiled
        return self._request

    def accepts(self, features: dict[str, Any]) -> bool:
        """Whether these are the fast tokenizer's padded arrays, with every input the model takes."""
        return all(isinstance(features.get(name), np.ndarray) for name in self._ov.input_names)

    def __call__(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Sentence embeddings (float32) of padded token arrays (input_ids, attention_mask, ...)."""
        torch = self._torch
        request = self._ready()
        inputs = {name: features[name] for name in self._ov.input_names}
        request.infer(inputs, share_inputs=True, share_outputs=True)
        # Shared with the request until its next infer: the modules below make new arrays from it.
        hidden = request.get_output_tensor(self._output).data
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

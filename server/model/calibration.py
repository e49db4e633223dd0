"""Texts the model layer runs without a caller: static int8 calibration and held-out checks.

Nothing here is fetched: the built-in calibration set is the post-processing corpus (64 real
sentences: questions, facts, code, several languages) plus generated texts of 6 to 120 words,
so activation ranges cover short queries and long passages alike. A user who knows their
traffic names a file instead (catalogue ``calibration_file``), one text per line.
"""

from __future__ import annotations

import random
from pathlib import Path

from embedpool.server.errors import ConfigError
from embedpool.server.model.postprocess import CALIBRATION_CORPUS

BUILTIN_SIZE = 300
_WORD_LIST = (
    "river mountain ledger invoice cluster kernel protein harvest violin orbit lantern "
    "contract glacier pixel sermon tariff enzyme ballot compiler meadow turbine senate "
    "novel vaccine archive bridge quarry harbor engine theorem canyon market signal "
    "the a of to and in for with on by from quickly slowly never often rarely again "
    "measured reviewed shipped rejected approved painted repaired counted described "
    "old new red green silent bright distant careful ancient public private modern"
)
_WORDS = tuple(_WORD_LIST.split())


def generated_texts(n: int, seed: int, min_words: int = 6, max_words: int = 40) -> list[str]:
    """n texts of min..max words, the same for a seed on every node, in no corpus of ours."""
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))).capitalize() + "."
        for _ in range(n)
    ]


def builtin_texts() -> list[str]:
    corpus = list(CALIBRATION_CORPUS)
    return corpus + generated_texts(BUILTIN_SIZE - len(corpus), seed=8, min_words=6, max_words=120)


def read_texts(path: str) -> list[str]:
    """A calibration file's non-empty lines. ConfigError when it cannot be read or holds none."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"calibration_file {path!r}: cannot read it ({exc})") from exc
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ConfigError(f"calibration_file {path!r} holds no text; write one calibration text per line")
    return texts


def calibration_texts(path: str | None) -> list[str]:
    return builtin_texts() if path is None else read_texts(path)

"""mypy --strict over the whole distribution: the client (embedpool), embedpool.bench and
embedpool.server, and the LlamaIndex and LangChain drop-ins in integrations/.

The package dirs are mapped (embedpool = client/, embedpool.server = server/), which an
editable install resolves with an import hook that mypy cannot follow. So this builds a
tree of symlinks laid out as the installed package (.typecheck/embedpool/...) and points
mypy at it. Settings and the allow-listed exceptions are in pyproject.toml [tool.mypy].
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / ".typecheck"


def link_tree() -> Path:
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "embedpool"
    package.mkdir(parents=True)
    for entry in (ROOT / "client").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "server").symlink_to(ROOT / "server")
    return TREE


def main(argv: list[str]) -> int:
    tree = link_tree()
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "-p",
        "embedpool",
        # the drop-ins (integrations/, installed editable): they use the client's public API only
        "-p",
        "llama_index.embeddings.embedpool",
        "-p",
        "langchain_embedpool",
        *argv,
    ]
    env_path = str(tree)
    return subprocess.call(cmd, cwd=ROOT, env={**os.environ, "MYPYPATH": env_path})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

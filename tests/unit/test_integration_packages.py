"""The LlamaIndex and LangChain drop-ins as packages: each depends on the thin client only
(no torch, no ray, not even transitively), builds into a wheel without a deprecation
warning (the main distribution too), and installs into a fresh venv beside the thin client."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "llama-index-embeddings-embedpool": (
        ROOT / "integrations/llama-index",
        "llama_index.embeddings.embedpool",
    ),
    "langchain-embedpool": (ROOT / "integrations/langchain", "langchain_embedpool"),
}
HEAVY = {"torch", "ray", "sentence-transformers", "transformers", "onnxruntime", "openvino"}


def requirement_names(dist: str) -> set[str]:
    """The distributions `dist` needs, transitively, extras not taken (installed metadata)."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = todo.pop()
        for req in metadata.requires(name) or []:
            if "extra ==" in req:
                continue
            dep = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")
            if dep not in seen:
                seen.add(dep)
                try:
                    metadata.distribution(dep)
                except metadata.PackageNotFoundError:
                    continue  # a marker for another platform or Python
                todo.append(dep)
    return seen


@pytest.mark.parametrize("dist", sorted(PACKAGES))
def test_each_drop_in_stands_on_the_thin_client_alone(dist: str) -> None:
    project = tomllib.loads((PACKAGES[dist][0] / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ]", r, maxsplit=1)[0] for r in project["dependencies"]}
    assert "embedpool" in declared and len(declared) == 2, declared  # the client and the framework
    closure = requirement_names(dist)
    assert "embedpool" in closure
    assert not closure & HEAVY, f"{dist} pulls in {sorted(closure & HEAVY)}"
    assert set(requirement_names("embedpool")) <= {"grpcio", "protobuf", "numpy", "typing-extensions"}


def test_the_wheels_build_without_warnings_and_install_into_a_fresh_venv(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    leftover = not (ROOT / "build").exists()  # setuptools builds in the source tree's build/
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(ROOT),
            *(str(path) for path, _ in PACKAGES.values()),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if leftover:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    log = built.stdout + built.stderr
    # setuptools' license-table deprecation (it stops building after 2027-02-18), or any other.
    assert not re.search(r"Deprecat|License classifiers are deprecated", log), [
        line for line in log.splitlines() if "eprecat" in line
    ]
    files = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(files) == 3, files
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(ROOT / "constraints.txt"),
            *(str(wheels / f) for f in files),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, importlib.util as u\n"
            "from llama_index.embeddings.embedpool import EmbedpoolEmbedding\n"
            "from langchain_embedpool import EmbedpoolEmbeddings\n"
            "EmbedpoolEmbedding(target='127.0.0.1:1'); EmbedpoolEmbeddings(target='127.0.0.1:1')\n"
            f"print(sorted(n for n in {sorted(HEAVY)!r} if u.find_spec(n.replace('-', '_')) is not None))",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip() == "[]", check.stdout

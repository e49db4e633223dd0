"""deploy/docker/Dockerfile.cpu and Dockerfile.cuda, checked without a Docker engine.

A small parser splits each file into instructions (comments, blank lines and line
continuations as Docker reads them) and the tests check that every instruction is one
Docker knows, every COPY/ADD source exists in the build context (the repository root)
and is not excluded by the Dockerfile's own .dockerignore, and that the torch pin of
constraints.txt is how both images choose their torch.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
FLAVOURS = ["cpu", "cuda"]
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Docker's reading: parser directives, comments, blank lines and backslash continuations
    (a comment line inside a continued instruction is dropped). Unknown keywords raise."""
    out: list[Instruction] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if not current:
            start = number
        continued = stripped.endswith("\\")
        current.append(stripped[:-1].rstrip() if continued else stripped)
        if continued:
            continue
        logical = " ".join(part for part in current if part)
        current = []
        keyword, _, args = logical.partition(" ")
        if keyword.upper() not in INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        if keyword != keyword.upper():
            raise ValueError(f"line {start}: write instructions in upper case ({keyword!r})")
        out.append(Instruction(start, keyword, args.strip()))
    if current:
        raise ValueError("the file ends inside a continued instruction")
    return out


def dockerignore_allows(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes; a directory pattern
    covers what is under it."""
    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pat) for prefix in prefixes)
        if hit:
            allowed = negate
    return allowed


def read(flavour: str) -> list[Instruction]:
    return parse_dockerfile((DOCKER / f"Dockerfile.{flavour}").read_text())


def ignore_patterns(flavour: str) -> list[str]:
    file = DOCKER / f"Dockerfile.{flavour}.dockerignore"
    lines = [ln.strip() for ln in file.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def copy_sources(instruction: Instruction) -> list[str]:
    words = shlex.split(instruction.args)
    if any(w.startswith("--from") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def torch_pin() -> str:
    pins = re.findall(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert len(pins) == 1, pins
    return pins[0]


# ---- the parser itself -------------------------------------------------------------------------


def test_parser_joins_continuations_and_refuses_unknown_instructions() -> None:
    text = "# syntax=docker/dockerfile:1\nFROM x\nRUN a \\\n  # note\n  && b\n\nCOPY a b\n"
    assert [(i.line, i.keyword, i.args) for i in parse_dockerfile(text)] == [
        (2, "FROM", "x"),
        (3, "RUN", "a && b"),
        (7, "COPY", "a b"),
    ]
    with pytest.raises(ValueError, match="unknown instruction 'RUNN'"):
        parse_dockerfile("FROM x\nRUNN a\n")
    with pytest.raises(ValueError, match="continued"):
        parse_dockerfile("FROM x\nRUN a \\\n")
    assert dockerignore_allows(["*", "!server/", "**/__pycache__"], "server/serving/app.py")
    assert not dockerignore_allows(["*", "!server/", "**/__pycache__"], "server/__pycache__/x.pyc")
    assert not dockerignore_allows(["*", "!server/"], ".venv")


# ---- the Dockerfiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dockerfile_parses_and_starts_from_a_base(flavour: str) -> None:
    instructions = read(flavour)
    keywords = [i.keyword for i in instructions]
    first_from = keywords.index("FROM")
    assert set(keywords[:first_from]) <= {"ARG"}
    assert keywords.count("FROM") == 1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_copied_path_exists_and_is_in_the_build_context(flavour: str) -> None:
    patterns = ignore_patterns(flavour)
    copies = [i for i in read(flavour) if i.keyword in ("COPY", "ADD")]
    assert copies
    sources = [s for i in copies for s in copy_sources(i)]
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
        assert files, source
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            assert dockerignore_allows(patterns, rel), f"{rel} is excluded by the .dockerignore"
    # what `pip install .` needs: the package dirs of pyproject.toml, and the readme it names
    assert {"pyproject.toml", "README.md", "constraints.txt"} <= set(sources)
    assert {"client", "server"} <= {s.rstrip("/") for s in sources}
    assert not dockerignore_allows(patterns, ".venv/bin/python")
    assert not dockerignore_allows(patterns, "node_modules/x.js")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_torch_comes_first_at_the_constraints_pin_then_the_server_extra(flavour: str) -> None:
    instructions = read(flavour)
    runs = [i for i in instructions if i.keyword == "RUN"]
    (torch_run,) = [r for r in runs if "torch==" in r.args]
    (server_run,) = [r for r in runs if ".[server]" in r.args]
    assert "sed -n 's/^torch==//p' constraints.txt" in torch_run.args  # the pin, read from one place
    assert '"torch==${TORCH_VERSION}"' in torch_run.args
    assert 'pip install -c constraints.txt ".[server]"' in server_run.args
    copied_constraints = next(
        i.line for i in instructions if i.keyword == "COPY" and "constraints.txt" in copy_sources(i)
    )
    assert copied_constraints < torch_run.line < server_run.line
    # and the wheel is the right kind: the build fails otherwise
    expect = "1 if torch.version.cuda else 0" if flavour == "cpu" else "0 if torch.version.cuda else 1"
    assert expect in torch_run.args


def test_the_torch_pin_admits_the_cuda_and_cpu_builds_of_its_version() -> None:
    """Why constraints.txt needs no CUDA twin: a pin without a local label matches any local label."""
    version = torch_pin()
    pin = SpecifierSet(f"=={version}")
    for build in (version, f"{version}+cpu", f"{version}+cu128", f"{version}+cu130"):
        assert pin.contains(build), build


def test_the_index_urls_pick_the_cpu_and_the_cuda_wheels() -> None:
    args = {
        f: {i.args.split("=", 1)[0]: i.args.split("=", 1)[1] for i in read(f) if i.keyword == "ARG"}
        for f in FLAVOURS
    }
    assert args["cpu"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert (
        args["cuda"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    )  # PyPI's Linux torch is the CUDA build
    # One Ray cluster runs one Python: both images from the same base.
    assert args["cpu"]["PYTHON_VERSION"] == args["cuda"]["PYTHON_VERSION"]
    froms = {f: next(i.args for i in read(f) if i.keyword == "FROM") for f in FLAVOURS}
    assert froms["cpu"] == froms["cuda"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_entrypoint_ports_user_and_probe_tooling(flavour: str) -> None:
    instructions = read(flavour)
    last = {i.keyword: i.args for i in instructions}
    assert json.loads(last["ENTRYPOINT"]) == ["embedpool", "serve"]
    assert json.loads(last["CMD"]) == ["--ray-grpc-port", "9000"]
    assert set(last["EXPOSE"].split()) == {"50051", "8080", "9000"}
    assert last["USER"] == "ray"
    assert "grpc_health" in last["HEALTHCHECK"] and "localhost:50051" in last["HEALTHCHECK"]
    # KubeRay's default probes run wget inside Ray containers
    assert any(
        i.keyword == "RUN" and "install -y --no-install-recommends wget" in i.args for i in instructions
    )

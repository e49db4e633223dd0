"""The package rules of server/__init__.py, read off the imports (AST), so that they hold.

Every import counts: at module top, inside functions and under TYPE_CHECKING alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = "embedpool.server"
SERVER_PACKAGES = ("model", "service", "fronts", "direct", "serving", "config")

# package (as its dotted name) -> import prefixes it must never use
FORBIDDEN: dict[str, tuple[str, ...]] = {
    f"{SERVER}.errors": ("ray", "grpc", "embedpool.v1", *(f"{SERVER}.{p}" for p in SERVER_PACKAGES)),
    f"{SERVER}.types": ("ray", "grpc", "embedpool.v1", f"{SERVER}.model", f"{SERVER}.serving"),
    f"{SERVER}.config": (
        "ray",
        "grpc",
        "torch",
        "embedpool.v1",
        *(f"{SERVER}.{p}" for p in SERVER_PACKAGES if p != "config"),
    ),
    f"{SERVER}.model": (
        "ray",
        "grpc",
        "embedpool.v1",
        *(f"{SERVER}.{p}" for p in ("service", "fronts", "direct", "serving")),
    ),
    f"{SERVER}.service": ("ray", *(f"{SERVER}.{p}" for p in ("model", "fronts", "direct", "serving"))),
    f"{SERVER}.fronts": ("ray", *(f"{SERVER}.{p}" for p in ("model", "direct", "serving"))),
    f"{SERVER}.direct": ("ray", *(f"{SERVER}.{p}" for p in ("model", "fronts", "serving"))),
    SERVER: ("ray",),  # errors, types and the package itself
    f"{SERVER}.serving": (),  # the Ray wiring may import any of the above
    "embedpool": (SERVER,),  # the client, embedpool.bench and embedpool.v1: never the server
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    head = "embedpool.server" if parts[0] == "server" else "embedpool"
    return ".".join([head, *parts[1:]])


def imports(source: str, module: str, is_package: bool) -> set[str]:
    """Every module named by an import statement in `source`, relative ones resolved."""
    found: set[str] = set()
    package = module if is_package else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def rules_for(module: str) -> tuple[str, ...]:
    best = max((p for p in FORBIDDEN if module == p or module.startswith(p + ".")), key=len, default=None)
    return FORBIDDEN[best] if best else ()


def violations(module: str, found: set[str]) -> list[str]:
    return [
        f"{module} imports {name}"
        for name in sorted(found)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in rules_for(module))
    ]


def sources() -> list[Path]:
    files = [*(ROOT / "server").rglob("*.py"), *(ROOT / "client").rglob("*.py")]
    return [f for f in files if "v1" not in f.relative_to(ROOT).parts[:2]]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_package_rules_hold(path: Path) -> None:
    module = module_name(path)
    found = imports(path.read_text(), module, path.name == "__init__.py")
    assert violations(module, found) == []


def test_the_client_never_names_the_server_in_a_string() -> None:
    # importlib.import_module("embedpool.server...") would dodge the import rule above
    for path in (ROOT / "client").rglob("*.py"):
        if "v1" in path.relative_to(ROOT).parts[:2]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith(SERVER), f"{path}: {node.value!r}"


def test_only_the_serving_package_imports_ray() -> None:
    for path in (ROOT / "server").rglob("*.py"):
        module = module_name(path)
        if module.startswith(f"{SERVER}.serving"):
            continue
        found = imports(path.read_text(), module, path.name == "__init__.py")
        assert not [n for n in found if n == "ray" or n.startswith("ray.")], module


M, C = f"{SERVER}.model.runner", f"{SERVER}.service.core"


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (M, "import ray\n", [f"{M} imports ray"]),
        (M, "def f():\n    import grpc.aio\n", [f"{M} imports grpc.aio"]),
        (C, "from ray.serve import batch\n", [f"{C} imports ray.serve"]),
        (M, "from ..service import core\n", [f"{M} imports {SERVER}.service"]),
        (
            "embedpool.cli",
            "from embedpool.server.serving import cli\n",
            [f"embedpool.cli imports {SERVER}.serving"],
        ),
        (C, "import numpy\nfrom embedpool.server.errors import X\n", []),
        (f"{SERVER}.serving.app", "import ray\nfrom embedpool.server.model import runner\n", []),
    ],
)
def test_the_checker_catches_a_broken_rule(module: str, source: str, expected: list[str]) -> None:
    found = imports(source, module, False)
    assert [v for v in violations(module, found) if v in expected or not expected] == expected


@pytest.mark.parametrize(
    "path", sorted((ROOT / "integrations").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_drop_ins_use_the_public_client_only(path: Path) -> None:
    # integrations/: the client's top-level names, never the server, generated code or private modules
    found = imports(path.read_text(), "integration", False)
    reached = {name for name in found if name == "embedpool" or name.startswith("embedpool.")}
    import embedpool

    public = {f"embedpool.{n}" for n in embedpool.__all__} | {"embedpool"}
    assert reached <= public, f"{path}: {sorted(reached - public)}"

"""What each install brings: the thin client, the server extra, the bench extra."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def extras() -> dict[str, set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = re.compile(r"^[A-Za-z0-9_.-]+")

    def names(reqs: list[str]) -> set[str]:
        return {m.group(0).lower() for r in reqs if (m := name.match(r))}

    out = {"": names(project["dependencies"])}
    out.update({extra: names(reqs) for extra, reqs in project["optional-dependencies"].items()})
    return out


def test_pip_install_embedpool_is_the_thin_client_only() -> None:
    assert extras()[""] == {"grpcio", "protobuf", "numpy"}


def test_the_server_extra_carries_no_plotting_and_the_bench_extra_does() -> None:
    found = extras()
    assert "matplotlib" not in found["server"]
    assert "matplotlib" in found["bench"]
    assert "ray" in found["server"]

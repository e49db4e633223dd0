"""Shared by unit and integration tests: running tests beside busy CPU loops.

- ``@pytest.mark.busy_cpu`` (or ``busy_cpu(n)``): that test runs with n busy loops (default 2),
  for tests of races that only a loaded machine shows.
- ``pytest --busy-cpu N``: every test of the run has N busy loops beside it, to find tests
  that pass only on an idle machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contention import busy_cpu


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--busy-cpu",
        type=int,
        default=0,
        metavar="N",
        help="run the whole session beside N busy CPU loops (finds tests that need an idle machine)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "busy_cpu(n=2): run this test beside n busy CPU loops")


@pytest.fixture(scope="session", autouse=True)
def _busy_session(request: pytest.FixtureRequest) -> Iterator[None]:
    loops: int = request.config.getoption("--busy-cpu")
    if loops <= 0:
        yield
        return
    with busy_cpu(loops):
        yield


@pytest.fixture(autouse=True)
def _busy_test(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("busy_cpu")
    if marker is None or request.config.getoption("--busy-cpu") > 0:
        yield
        return
    with busy_cpu(int(marker.args[0]) if marker.args else 2):
        yield

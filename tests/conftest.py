"""Fixtures shared by the suite.

Tests marked `broker("name")` need a real broker started by `make services-up`. Locally a test
whose broker is down is skipped with the command that starts it; in CI (CI=true) it fails, so a
missing install step can never hide behind a skip.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from queuebench.adapters.base import Adapter
from tests.harness import PairRun

BROKER_PORTS = {"redis": 6379, "rabbitmq": 5672, "postgres": 5432, "kafka": 9092,
                "elasticmq": 9324, "toxiproxy": 8474}


def broker_answers(name: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", BROKER_PORTS[name]), timeout=1):
            return True
    except OSError:
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("broker"):
        name = marker.args[0]
        if broker_answers(name):
            continue
        message = f"{name} is not running; start it with: make services-up"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path, monkeypatch):
    """Relative default paths (.state/...) land in the test's own folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pair_runs(tmp_path: Path) -> Iterator[Callable[..., PairRun]]:
    """Makes PairRuns (or runs of a subclass, `cls`), each in a folder of its own; closes them all
    at teardown."""
    runs: list[PairRun] = []

    def make(adapter: Adapter, *, work_ms: float = 0.0, cls: type[PairRun] = PairRun) -> PairRun:
        runs.append(cls(adapter, tmp_path / f"run{len(runs)}", work_ms=work_ms))
        return runs[-1]

    yield make
    for run in runs:
        run.close()

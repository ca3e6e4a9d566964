"""Shared pytest configuration. Lab fixtures live in tests/lab/fixtures.py (registered below)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Tests run `python -m kubeforge` in subprocesses, often from a temporary directory: make that this
# checkout's kubeforge, whichever checkout `pip install -e` last pointed the interpreter at.
REPO = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

pytest_plugins = [m for m in ("tests.lab.fixtures",) if importlib.util.find_spec(m.rsplit(".", 1)[0]) and importlib.util.find_spec(m)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing (review the diff!)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))

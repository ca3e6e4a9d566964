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
    parser.addoption(
        "--by-hand",
        action="store_true",
        default=False,
        help="also run the tests marked by_hand (heavy matrices and long lab cases; their last "
        "figures are in docs)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``by_hand`` are deselected (listed as such, never skipped) unless --by-hand or
    KUBEFORGE_BY_HAND=1: they are the full versions of what CI runs as a seeded sample."""
    if config.getoption("--by-hand") or os.environ.get("KUBEFORGE_BY_HAND") == "1":
        return
    keep = [i for i in items if i.get_closest_marker("by_hand") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("by_hand") is not None])
        items[:] = keep


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))

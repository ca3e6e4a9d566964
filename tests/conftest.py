"""Shared pytest configuration. Lab fixtures live in tests/lab/fixtures.py (registered below)."""

from __future__ import annotations

import importlib.util

import pytest

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

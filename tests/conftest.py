"""Shared pytest configuration. Lab fixtures live in tests/lab/fixtures.py (registered below)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
from _pytest.pathlib import make_numbered_dir_with_cleanup

# Tests run `python -m kubeforge` in subprocesses, often from a temporary directory: make that this
# checkout's kubeforge, whichever checkout `pip install -e` last pointed the interpreter at.
REPO = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

pytest_plugins = [m for m in ("tests.lab.fixtures",) if importlib.util.find_spec(m.rsplit(".", 1)[0]) and importlib.util.find_spec(m)]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README's command) a worker's temp dirs sit a level deeper
    (``…/popen-gw1/…``), which took the unix sockets tests bind under ``tmp_path`` (a real
    containerd's, the kubelet stand-in's CRI socket) past their 104-108 byte limit. The controller's
    base is then a numbered dir under a short root, made and cleaned as pytest's own (the 3 newest
    stay, a locked one is never removed)."""
    if config.option.basetemp or hasattr(config, "workerinput") or not config.getoption("numprocesses", default=None):
        return
    root = Path(tempfile.gettempdir()) / "kfpt"
    root.mkdir(mode=0o700, exist_ok=True)
    config.option.basetemp = str(make_numbered_dir_with_cleanup(root=root, prefix="r", keep=3,
                                                                lock_timeout=3 * 86400, mode=0o700))


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

"""Tests marked ``by_hand`` (full fault matrices, long lab cases) are deselected in the default run
(CI) and listed as deselected, never skipped; --by-hand or KUBEFORGE_BY_HAND=1 runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_addoption, pytest_collection_modifyitems\n")
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n"
        "def test_always():\n    assert True\n\n"
        "@pytest.mark.by_hand\ndef test_heavy():\n    assert True\n"
    )
    full_env = {k: v for k, v in os.environ.items() if k != "KUBEFORGE_BY_HAND"}
    full_env.update({"PYTHONPATH": str(REPO), **(env or {})})
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "markers=by_hand: heavy", *args, str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=120,
    )
    return res.stdout


def test_by_hand_tests_are_deselected_not_skipped_by_default(tmp_path: Path) -> None:
    out = run(tmp_path)
    assert "1 passed, 1 deselected" in out and "skipped" not in out, out


def test_by_hand_tests_run_with_the_flag_or_the_environment(tmp_path: Path) -> None:
    assert "2 passed" in run(tmp_path, "--by-hand")
    assert "2 passed" in run(tmp_path, env={"KUBEFORGE_BY_HAND": "1"})

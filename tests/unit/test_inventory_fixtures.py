"""Every invalid fixture produces exactly its expected ``file:line:col: where: message`` lines.

The expected lines live beside each fixture (``<name>.expected``) and were reviewed by hand;
``pytest --update-golden`` rewrites them from the current output (review the diff).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubeforge.errors import InventoryError
from kubeforge.inventory import load

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "inventories"
CASES = sorted(p.stem for p in FIXTURES.glob("*.yaml"))
EXAMPLES = sorted(p.name for p in (REPO / "inventories").glob("*.yaml"))


def _lines(rel: Path) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load(rel)
    return [str(p) for p in sorted(info.value.problems + info.value.warnings)]


@pytest.mark.parametrize("name", CASES)
def test_invalid_fixture_reports_exactly_the_expected_lines(name, monkeypatch, update_golden):
    monkeypatch.chdir(REPO)  # the path is shown as given: relative stays relative
    rel = Path("tests/fixtures/inventories") / f"{name}.yaml"
    got = _lines(rel)
    expected_file = FIXTURES / f"{name}.expected"
    if update_golden:
        expected_file.write_text("\n".join(got) + "\n")
    assert got == expected_file.read_text().splitlines()


def test_every_fixture_has_at_least_one_error_and_expected_lines():
    assert len(CASES) >= 20
    for name in CASES:
        assert (FIXTURES / f"{name}.expected").is_file(), name
        assert any(": warning: " not in line for line in (FIXTURES / f"{name}.expected").read_text().splitlines()), name


def test_the_many_problems_fixture_reports_them_all_in_one_run(monkeypatch):
    monkeypatch.chdir(REPO)
    lines = _lines(Path("tests/fixtures/inventories/many-problems.yaml"))
    assert len(lines) >= 10
    positions = [tuple(int(x) for x in line.split(":")[1:3]) for line in lines]
    assert positions == sorted(positions)
    assert "tests/fixtures/inventories/many-problems.yaml:35:15: hosts[4].roles: 'wroker' is not a role " \
           "(control-plane, etcd, worker, load-balancer)" in lines


def test_an_absolute_path_is_shown_as_given(tmp_path):
    src = FIXTURES / "bad-role.yaml"
    target = tmp_path / "inv.yaml"
    target.write_text(src.read_text())
    assert _lines(target) == [
        f"{target}:16:15: hosts[2].roles: 'master' is not a role (control-plane, etcd, worker, load-balancer)"
    ]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_inventory_validates_with_no_errors(name):
    result = load(REPO / "inventories" / name)
    assert result.cluster.hosts
    assert all(w.severity == "warning" for w in result.warnings)


def test_validate_command_exits_3_and_prints_every_problem(monkeypatch):
    proc = subprocess.run(
        [sys.executable, "-m", "kubeforge", "validate", "-i", "tests/fixtures/inventories/duplicate-hosts.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 3
    expected = (FIXTURES / "duplicate-hosts.expected").read_text().splitlines()
    for line in expected:
        assert line in proc.stderr
    assert "error: 3 problems in the inventory" in proc.stderr
    assert "Traceback" not in proc.stderr

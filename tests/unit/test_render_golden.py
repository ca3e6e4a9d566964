"""Golden files: tests/golden/<case>/<host>/<remote path>, plus a MANIFEST of modes and owners.

Regenerate with ``python -m pytest tests/unit/test_render_golden.py --update-golden`` and review the
diff like code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kubeforge.inventory import load_cluster
from kubeforge.model import Cluster, RenderedFile
from kubeforge.pki.registry import read_registry_access
from kubeforge.render import render_cluster
from tests.golden.cases import CASES, FAKE_CA_HASH, FAKE_REGISTRY_PASSWORD, GOLDEN_DIR, FakeSecrets

INVENTORIES = sorted((Path(__file__).resolve().parents[2] / "inventories").glob("*.yaml"))


def manifest(rendered: dict[str, list[RenderedFile]]) -> str:
    lines = ["# host path mode owner:group secret source"]
    for host, files in rendered.items():
        for f in files:
            lines.append(f"{host} {f.path} {f.mode:04o} {f.owner}:{f.group} {str(f.secret).lower()} {f.source}")
    return "\n".join(lines) + "\n"


def expected_tree(rendered: dict[str, list[RenderedFile]]) -> dict[str, bytes]:
    tree = {"MANIFEST": manifest(rendered).encode()}
    for host, files in rendered.items():
        for f in files:
            tree[f"{host}{f.path}"] = f.content
    return tree


def check_golden(case_dir: Path, tree: dict[str, bytes], update: bool) -> None:
    if update:
        if case_dir.exists():
            shutil.rmtree(case_dir)
        for rel, content in tree.items():
            target = case_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return
    if not case_dir.is_dir():
        pytest.fail(f"no golden files at {case_dir}: run pytest with --update-golden and review them")
    on_disk = {str(p.relative_to(case_dir)) for p in case_dir.rglob("*") if p.is_file()}
    missing = sorted(set(tree) - on_disk)
    stale = sorted(on_disk - set(tree))
    assert not missing, f"golden files missing (run with --update-golden): {missing}"
    assert not stale, f"golden files no longer rendered (run with --update-golden): {stale}"
    for rel, content in tree.items():
        golden = (case_dir / rel).read_bytes()
        assert content.decode() == golden.decode(), f"{case_dir.name}/{rel} differs from its golden file"


def render_case(cluster: Cluster) -> dict[str, list[RenderedFile]]:
    return render_cluster(cluster, secrets=FakeSecrets(), ca_cert_hash=FAKE_CA_HASH,
                          registry_access=read_registry_access(cluster))


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_files_match_their_golden_copies(case: str, update_golden: bool) -> None:
    rendered = render_case(CASES[case]())
    check_golden(GOLDEN_DIR / case, expected_tree(rendered), update_golden)


def test_every_example_inventory_is_covered() -> None:
    assert len(INVENTORIES) >= 3


@pytest.mark.parametrize("inventory", INVENTORIES, ids=[p.stem for p in INVENTORIES])
def test_example_inventories_render_to_their_golden_copies(inventory: Path, update_golden: bool, monkeypatch) -> None:
    # private-registry.yaml reads its registry password from this variable: an obviously fake one
    monkeypatch.setenv("KUBEFORGE_REGISTRY_PASSWORD", FAKE_REGISTRY_PASSWORD)
    # PKI files are left out: their keys are random, and the PKI is tested by properties instead.
    rendered = render_case(load_cluster(inventory))
    check_golden(GOLDEN_DIR / f"inventory-{inventory.stem}", expected_tree(rendered), update_golden)


def test_a_missing_golden_directory_fails_with_the_update_hint(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="--update-golden"):
        check_golden(tmp_path / "nothing-here", {"MANIFEST": b""}, update=False)

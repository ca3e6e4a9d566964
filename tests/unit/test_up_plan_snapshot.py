"""The `up` plan of the example HA inventory on fresh hosts, as text and JSON, against reviewed
snapshots (regenerate with ``pytest --update-golden`` and review the diff like code).

PKI is generated per test run, so file digests and sizes are normalised; everything else — phases,
order, strategies, hosts, commands, guards, ids — must match byte for byte."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

from kubeforge.facts.types import Applied, Held, Membership, Packages, Units
from kubeforge.inventory import load_cluster
from kubeforge.plan.up import ClusterState, plan_up
from kubeforge.workflows.up import cni_source, resolve_context
from tests.unit.test_up_planner import RUNNER

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "ha-external-etcd.yaml"
SNAPSHOT_TEXT = Path(__file__).with_name("test_up_plan_snapshot.txt")
SNAPSHOT_JSON = Path(__file__).with_name("test_up_plan_snapshot.json")


def normalise(text: str, workdir: Path) -> str:
    text = text.replace(str(workdir), "<dir>")
    text = re.sub(r"sha256:[0-9a-f]{12}", "sha256:<digest>", text)
    text = re.sub(r'"sha256": "[0-9a-f]{64}"', '"sha256": "<digest>"', text)
    text = re.sub(r"\(\d+ bytes", "(<n> bytes", text)
    # a file's step id holds a digest of its content (fresh keys and certificates every run)
    text = re.sub(r'(/put-[a-z0-9-]*)-[0-9a-f]{8}"', r'\1-<digest>"', text)
    return re.sub(r'"size": \d+', '"size": "<n>"', text)


def fresh(name: str):
    return dataclasses.replace(RUNNER, host=name, hostname=name, packages=Packages(), held=Held(), units=Units(),
                               applied=Applied(), membership=Membership(), problems={})


def example_plan(tmp_path: Path):
    shutil.copy(INVENTORY, tmp_path / "inventory.yaml")
    cluster = load_cluster(tmp_path / "inventory.yaml")
    ctx = resolve_context(cluster, {h.name: fresh(h.name) for h in cluster.hosts}, ClusterState())
    assert ctx.cni == cni_source(cluster)
    return plan_up(ctx)


def check(path: Path, actual: str, update: bool) -> None:
    if update or not path.exists():
        path.write_text(actual)
    assert actual == path.read_text(), f"{path.name} differs; run pytest --update-golden and review the diff"


def test_the_example_ha_plan_prints_as_the_reviewed_snapshot(tmp_path, update_golden):
    plan = example_plan(tmp_path)
    check(SNAPSHOT_TEXT, normalise(plan.render_text(), tmp_path) + "\n", update_golden)


def test_the_example_ha_plan_json_matches_the_reviewed_snapshot_and_holds_no_secret(tmp_path, update_golden):
    plan = example_plan(tmp_path)
    doc = json.dumps(plan.to_dict(), indent=1, sort_keys=True)
    secrets = json.loads((tmp_path / ".kubeforge" / "prod-ha" / "pki" / "secrets.json").read_text())
    assert secrets["bootstrapToken"] not in doc and secrets["certificateKey"] not in doc
    check(SNAPSHOT_JSON, normalise(doc, tmp_path) + "\n", update_golden)

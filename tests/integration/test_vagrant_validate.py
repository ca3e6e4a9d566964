"""`vagrant validate` of the top-level Vagrantfile for every shape its KF_* variables allow, and a
clear refusal of the shapes they do not. Each valid shape's machine list (KF_SHAPE_OUT) must also
make an inventory kubeforge accepts. Needs vagrant: skipped with a reason elsewhere, a failure under CI.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubeforge.inventory import loads
from tests.need import skip_or_fail
from tests.smoke import inventory

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CONTROL_PLANES = (1, 2, 3, 5)
DEDICATED_ETCD = (0, 1, 3, 5)
WORKERS = (0, 1, 2, 9)


def _allowed_shapes() -> list[dict]:
    shapes = []
    combos = itertools.product(CONTROL_PLANES, DEDICATED_ETCD, ("external", "stacked"))
    for i, (cps, etcd, topology) in enumerate(combos):
        if topology == "stacked" and etcd:
            continue  # stacked means the control planes are the members
        if etcd == 0 and cps % 2 == 0:
            continue  # an even membership: the Vagrantfile refuses it (below)
        shapes.append({"KF_CONTROL_PLANES": str(cps), "KF_ETCD": str(etcd), "KF_ETCD_TOPOLOGY": topology,
                       "KF_WORKERS": str(WORKERS[i % len(WORKERS)])})
    return shapes


ALLOWED = _allowed_shapes()
REFUSED = [
    ({"KF_CONTROL_PLANES": "2"}, "2 control planes cannot hold an odd etcd membership"),
    ({"KF_CONTROL_PLANES": "4"}, 'KF_CONTROL_PLANES="4" is not allowed'),
    ({"KF_ETCD": "2"}, 'KF_ETCD="2" is not allowed'),
    ({"KF_WORKERS": "lots"}, 'KF_WORKERS="lots" is not allowed'),
    ({"KF_ETCD_TOPOLOGY": "stacked", "KF_ETCD": "3"}, "KF_ETCD_TOPOLOGY=stacked runs etcd on the control planes"),
    ({"KF_SUBNET": "10.77"}, 'KF_SUBNET="10.77" must be three octets'),
    ({"KF_LIBVIRT_PREFIX": "prod-"}, 'KF_LIBVIRT_PREFIX="prod-" must start with kubeforge-'),
]


def _label(env: dict) -> str:
    return ",".join(f"{k.removeprefix('KF_').lower()}={v}" for k, v in env.items())


@pytest.fixture(scope="module")
def vagrant_runs(tmp_path_factory):
    """Every shape validated once, four at a time (vagrant spends most of a run starting Ruby)."""
    if shutil.which("vagrant") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("vagrant is not installed on this CI runner (apt install vagrant vagrant-libvirt)")
        skip_or_fail("vagrant is not installed (apt install vagrant vagrant-libvirt); CI runs these")
    home = tmp_path_factory.mktemp("vagrant-home")
    out_dir = tmp_path_factory.mktemp("shapes")

    def run(key_env):
        key, env = key_env
        shape_file = out_dir / f"{key}.json"
        full = {k: v for k, v in os.environ.items() if not k.startswith("KF_")}
        full.update(env, VAGRANT_HOME=str(home), VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_CWD=str(REPO),
                    KF_SHAPE_OUT=str(shape_file), VAGRANT_DOTFILE_PATH=str(out_dir / f"{key}.dot"))
        res = subprocess.run(["vagrant", "validate"], env=full, capture_output=True, text=True, timeout=300)
        shape = json.loads(shape_file.read_text()) if res.returncode == 0 and shape_file.exists() else None
        return key, (res, shape)

    jobs = [(_label(e), e) for e in ALLOWED] + [(_label(e), e) for e, _ in REFUSED]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(run, jobs))


@pytest.mark.parametrize("env", ALLOWED, ids=_label)
def test_vagrant_validate_accepts_every_allowed_shape_and_kubeforge_accepts_its_inventory(vagrant_runs, env):
    res, shape = vagrant_runs[_label(env)]
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Vagrantfile validated successfully" in res.stdout
    cps, etcd, workers = int(env["KF_CONTROL_PLANES"]), int(env["KF_ETCD"]), int(env["KF_WORKERS"])
    assert len(shape["hosts"]) == cps + etcd + workers
    addresses = [h["address"] for h in shape["hosts"]]
    assert len(set(addresses)) == len(addresses) and all(a.startswith("10.77.200.") for a in addresses)
    for mode in ("offline", "upstream"):
        doc = inventory.build(shape, mode=mode, key="/k", known_hosts="/kh", mirror_url="http://10.77.200.1:8470")
        cluster = loads(inventory.dump(doc), file=f"{_label(env)}.yaml", source=REPO / "x.yaml").cluster
        assert len(cluster.etcd_members) == (etcd or cps)


@pytest.mark.parametrize("env,message", REFUSED, ids=[_label(e) for e, _ in REFUSED])
def test_vagrant_validate_refuses_a_shape_the_variables_do_not_allow_saying_why(vagrant_runs, env, message):
    res, _ = vagrant_runs[_label(env)]
    assert res.returncode != 0
    assert message in res.stdout + res.stderr

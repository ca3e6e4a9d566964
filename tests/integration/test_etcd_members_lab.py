"""Membership on real machines: grow 3 -> 5 and shrink back to 3 while a writer keeps writing, and a
change that would lose quorum refused before anything is touched."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.integration.test_etcd_lab import etcdctl, inventory_with, kf, members_of

pytestmark = pytest.mark.lab


class Writer(threading.Thread):
    """Writes a key every 100 ms through the members that stay for the whole test, counting failures."""

    def __init__(self, lab, endpoints: str) -> None:
        super().__init__(daemon=True)
        self.lab, self.endpoints = lab, endpoints
        self.ok = self.failed = 0
        self.errors: list[str] = []
        self.acked: list[str] = []  # keys etcd acknowledged
        self.failed_at: list[float] = []  # time.monotonic() of each failed put
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"/kf/writer/{i:06d}"
            res = etcdctl(self.lab, "etcd-1", "put", key, "x", endpoints=self.endpoints)
            if res.returncode == 0:
                self.ok += 1
                self.acked.append(key)
            else:
                self.failed += 1
                self.failed_at.append(time.monotonic())
                self.errors.append(res.stderr.strip()[-200:])
            i += 1
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """One directory for every inventory of this module: they share the state dir, so the PKI."""
    return tmp_path_factory.mktemp("members")


@pytest.fixture(scope="module")
def mlab(lab_factory):
    return lab_factory([("etcd-1", ("control-plane", "etcd"))] + [(f"etcd-{i}", ("etcd",)) for i in range(2, 6)])


def test_grow_to_five_and_shrink_back_to_three_with_writes_served_throughout(mlab, state):
    tmp_path = state
    names3 = ["etcd-1", "etcd-2", "etcd-3"]
    names5 = names3 + ["etcd-4", "etcd-5"]
    inv3 = inventory_with(mlab, tmp_path / "etcd3.yaml", names3)
    inv5 = inventory_with(mlab, tmp_path / "etcd5.yaml", names5)
    res = kf("etcd", "install", "-i", str(inv3), "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    stay = ",".join(f"https://{mlab.address(n)}:2379" for n in names3)
    writer = Writer(mlab, stay)
    writer.start()
    try:
        refused = kf("etcd", "install", "-i", str(inv5), "--yes")
        assert refused.returncode == 7 and "kubeforge etcd members" in refused.stderr
        grow = kf("etcd", "members", "-i", str(inv5), "--yes", timeout=900)
        assert grow.returncode == 0, grow.stdout + grow.stderr
        listed = members_of(mlab, "etcd-1")
        assert sorted(m["name"] for m in listed) == names5 and not any(m.get("isLearner") for m in listed)
        st = json.loads(kf("etcd", "status", "-i", str(inv5), "-o", "json").stdout)
        assert st["healthy"] == 5 and st["allHealthy"]
        again = kf("etcd", "members", "-i", str(inv5), "--yes")
        assert again.returncode == 0 and "nothing to do" in again.stdout

        shrink = kf("etcd", "members", "-i", str(inv3), "--yes", timeout=900)
        assert shrink.returncode == 0, shrink.stdout + shrink.stderr
        assert sorted(m["name"] for m in members_of(mlab, "etcd-1")) == names3
        for gone in ("etcd-4", "etcd-5"):
            assert mlab.exec(gone, ["systemctl", "is-active", "etcd"]).stdout.strip() != "active"
            assert mlab.exec(gone, ["systemctl", "is-enabled", "etcd"]).stdout.strip() != "enabled"
    finally:
        writer.stop.set()
        writer.join(30)
    assert writer.ok > 20
    assert writer.failed == 0, writer.errors[:3]


def test_a_removal_that_would_lose_quorum_is_refused_before_anything_is_touched(mlab, state):
    # follows the test above: etcd-1..3 are members, etcd-4 and etcd-5 were retired
    names5 = ["etcd-1", "etcd-2", "etcd-3", "etcd-4", "etcd-5"]
    inv5 = inventory_with(mlab, state / "etcd5.yaml", names5)
    res = kf("etcd", "members", "-i", str(inv5), "--yes", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    before = members_of(mlab, "etcd-1")
    assert len(before) == 5
    for n in ("etcd-4", "etcd-5"):
        mlab.exec(n, ["systemctl", "stop", "etcd"])
    try:
        # keeping etcd-3..5 means removing the healthy etcd-1 and etcd-2 while etcd-4 and etcd-5
        # are down: after the first removal 2 of 4 voters would be healthy, below quorum
        inv = inventory_with(mlab, state / "etcd-3-5.yaml", ["etcd-3", "etcd-4", "etcd-5"])
        res = kf("etcd", "members", "-i", str(inv), "--yes")
        assert res.returncode == 7 and "below quorum" in res.stderr, res.stdout + res.stderr
        assert members_of(mlab, "etcd-1") == before
        for n in ("etcd-1", "etcd-2", "etcd-3"):
            assert mlab.exec(n, ["systemctl", "is-active", "etcd"]).stdout.strip() == "active"
        st = kf("etcd", "status", "-i", str(inv5))
        assert st.returncode == 4 and "etcd-4" in st.stderr and "3/5 healthy" in st.stdout
    finally:
        for n in ("etcd-4", "etcd-5"):
            mlab.exec(n, ["systemctl", "start", "etcd"])


# by hand: 84 s alone (etcd installed from bare machines first), more than this branch's CI share;
# figures in docs/node.md
@pytest.mark.by_hand
def test_replacing_a_powered_off_etcd_host_brings_three_of_three_back_losing_no_acknowledged_write(mlab, state):
    """etcd-3 is powered off and comes back as a blank machine (fresh disk, new SSH host key) at the
    same address; `node replace` removes its old member and adds it again as a learner, promoted."""
    names3 = ["etcd-1", "etcd-2", "etcd-3"]
    inv3 = inventory_with(mlab, state / "etcd3.yaml", names3)
    installed = mlab.exec("etcd-1", ["systemctl", "is-active", "etcd"]).stdout.strip() == "active"
    # the tests above leave five members; alone, this one starts from bare machines
    setup = kf("etcd", "members" if installed else "install", "-i", str(inv3), "--yes", timeout=900)
    assert setup.returncode == 0, setup.stdout + setup.stderr
    etcdctl(mlab, "etcd-1", "del", "/kf/writer/", "--prefix")
    stay = ",".join(f"https://{mlab.address(n)}:2379" for n in ("etcd-1", "etcd-2"))
    old_keys = mlab.known_hosts.read_text()
    writer = Writer(mlab, stay)
    writer.start()
    try:
        mlab.stop_machine("etcd-3")  # power off: nothing shuts down cleanly
        down = kf("node", "replace", "etcd-3", "-i", str(inv3), "--yes")
        assert down.returncode == 5 and "does not answer" in down.stderr, down.stdout + down.stderr

        mlab.start_machine("etcd-3")  # a volatile disk: blank, with new host keys
        mlab.known_hosts.write_text(old_keys)  # the operator's known_hosts still has the dead machine's key
        changed = kf("node", "replace", "etcd-3", "-i", str(inv3), "--yes")
        assert changed.returncode == 5, changed.stdout + changed.stderr
        assert "HOST KEY CHANGED" in changed.stderr and "--accept-new-host-key" in changed.stderr
        assert members_of(mlab, "etcd-1") and len(members_of(mlab, "etcd-1")) == 3  # nothing changed

        started = time.monotonic()
        res = kf("node", "replace", "etcd-3", "-i", str(inv3), "--yes", "--accept-new-host-key", timeout=900)
        ended = time.monotonic()
        assert res.returncode == 0, res.stdout + res.stderr
        print(f"node replace etcd-3: {ended - started:.1f}s")
        listed = members_of(mlab, "etcd-1")
        assert sorted(m["name"] for m in listed) == names3 and not any(m.get("isLearner") for m in listed)
        st = json.loads(kf("etcd", "status", "-i", str(inv3), "-o", "json").stdout)
        assert st["healthy"] == 3 and st["allHealthy"]
        assert mlab.exec("etcd-3", ["systemctl", "is-enabled", "etcd"]).stdout.strip() == "enabled"

        again = kf("node", "replace", "etcd-3", "-i", str(inv3), "--yes")
        assert again.returncode == 7 and "reachable and its etcd member is healthy" in again.stderr, again.stderr
    finally:
        writer.stop.set()
        writer.join(30)
    keys = etcdctl(mlab, "etcd-3", "get", "/kf/writer/", "--prefix", "--keys-only").stdout.split()
    lost = sorted(set(writer.acked) - set(keys))
    during = [t for t in writer.failed_at if started <= t <= ended]
    print(f"writer: {writer.ok} acknowledged, {writer.failed} failed ({len(during)} during the replace), {len(lost)} lost")
    assert writer.ok > 20
    assert lost == [], lost[:5]
    # A put in flight when etcd-3 loses power can time out unacknowledged (1 put in 2 of the 4 runs
    # so far, each before the replace started); the replace itself (member removed, learner added and
    # promoted) has cost no write in any run.
    assert during == [], writer.errors[:3]

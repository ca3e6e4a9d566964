"""Stacked etcd end to end on the lab: `kubeforge up` of 3 control planes whose etcd members are
kubeadm's static pods (the simulator runs Debian's real etcd 3.4.23 from its "etcd image" package),
then `etcd status`, `etcd backup` and `etcd restore` against that real etcd, and last `reset --hosts` of
one control plane (no Node object, no etcd member left).

The tests run in order on one lab: up -> status -> backup, damage, restore -> a restore that an
interruption left half done converges -> an inventory that disagrees with the manifests is refused ->
an upgrade with a control plane NotReady refused -> the upgrade 1.33 -> 1.34, across kubeadm's etcd
minor, under a writer and a quorum watcher -> reset, rejoin and removal at 1.34."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

# stacked is what the lab writes when the etcd hosts are exactly the control planes
LAYOUT = [(f"cp-{i}", ("control-plane", "etcd")) for i in (1, 2, 3)]
CPS = ("cp-1", "cp-2", "cp-3")
KUBECTL = ["sudo", "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
PKI = "/etc/kubernetes/pki/etcd"
MARKER = "/kubeforge-test/marker"
IMAGE_ETCDCTL = "/usr/lib/kubesim/images/etcd/etcdctl"
UPGRADE_TO = "1.34.2"  # the lab comes up at the mirror's oldest, 1.33.5: the next minor
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    lab: object
    dir: Path
    inventory: Path

    def kf(self, *args: str, inventory: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        # this checkout's kubeforge, whatever else the interpreter's site-packages holds
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(inventory or self.inventory)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False, env=env)

    def etcdctl(self, on: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The etcd image's etcdctl on a control plane (as `crictl exec` into the etcd container would)
        with kubeadm's healthcheck-client certificate: the test's view, independent of kubeforge's."""
        return self.lab.exec(on, ["sudo", "env", "ETCDCTL_API=3", IMAGE_ETCDCTL, "--endpoints=https://127.0.0.1:2379",
                                  f"--cacert={PKI}/ca.crt", f"--cert={PKI}/healthcheck-client.crt",
                                  f"--key={PKI}/healthcheck-client.key", *args], check=check)

    def status(self) -> list[dict]:
        res = self.kf("etcd", "status", "-o", "json")
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)["members"]

    def nodes(self, timeout: float = 60) -> set[str]:
        deadline = time.monotonic() + timeout
        while True:
            res = self.lab.exec("cp-1", [*KUBECTL, "get", "nodes", "-o", "name"], check=False)
            if res.returncode == 0:
                return {line.split("/", 1)[1] for line in res.stdout.split()}
            if time.monotonic() > deadline:
                pytest.fail(f"the API did not answer within {timeout}s: {res.stderr}")
            time.sleep(1)


def write_inventory(src: Path, dest: Path, swap_addresses: bool = False) -> Path:
    doc = YAML(typ="safe").load(src.read_text())
    if swap_addresses:
        hosts = doc["spec"]["hosts"]
        hosts[1]["address"], hosts[2]["address"] = hosts[2]["address"], hosts[1]["address"]
    with dest.open("w") as f:
        YAML().dump(doc, f)
    return dest


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory(LAYOUT)
    d = tmp_path_factory.mktemp("stacked-lab")
    src = lab.write_inventory(d / "lab.yaml")
    doc = YAML(typ="safe").load(src.read_text())
    assert doc["spec"]["etcd"]["topology"] == "stacked"
    return Env(lab, d, write_inventory(src, d / "inventory.yaml"))


def etcd_processes(env: Env, name: str) -> list[str]:
    res = env.lab.exec(name, ["bash", "-c", "ps -eo stat=,args= | grep '^[^Z].*/usr/lib/kubesim/images/etcd/[e]tcd ' || true"])
    return res.stdout.splitlines()


def test_up_runs_a_real_etcd_static_pod_on_every_control_plane(env):
    res = env.kf("up", "--yes", timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for cp in CPS:
        procs = etcd_processes(env, cp)
        assert len(procs) == 1 and f"--name={cp}" in procs[0], procs
    listed = env.etcdctl("cp-1", "member", "list").stdout
    assert all(f"started, {cp}, https://{env.lab.address(cp)}:2380" in listed for cp in CPS), listed
    assert env.nodes() == set(CPS)


def without_etcdctl(env: Env) -> list[str]:
    return [cp for cp in CPS if env.lab.exec(cp, ["bash", "-c", "command -v etcdctl"], check=False).returncode]


def test_up_installs_etcdctl_on_the_stacked_control_planes(env):
    # kubeadm's etcd has no client on the host; status, backup and restore run etcdctl there
    assert not without_etcdctl(env), "up left control planes without etcdctl"
    for cp in CPS:
        version = env.lab.exec(cp, ["etcdctl", "version"], check=True).stdout
        assert "etcdctl version: 3.4.23" in version, version


def test_status_shows_three_healthy_members_with_one_leader(env):
    members = env.status()
    assert sorted(m["name"] for m in members) == list(CPS)
    assert all(m["healthy"] and m["version"] == "3.4.23" for m in members)
    assert sum(m["is_leader"] for m in members) == 1


# kubeadm's certificates issued short, as an operator can with real kubeadm (v1beta4's
# certificateValidityPeriod, read by `kubeadm certs renew --config`)
SHORT = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncertificateValidityPeriod: 480h\n"
# each leaf kubeadm owns (under /etc/kubernetes): its name for `kubeadm certs renew` and the CA it must
# verify against (kubeconfigs: their embedded client certificate)
LEAVES = {"pki/apiserver.crt": ("apiserver", "ca"), "pki/apiserver-kubelet-client.crt": ("apiserver-kubelet-client", "ca"),
          "pki/front-proxy-client.crt": ("front-proxy-client", "front-proxy-ca"),
          "pki/apiserver-etcd-client.crt": ("apiserver-etcd-client", "etcd/ca"),
          "pki/etcd/server.crt": ("etcd-server", "etcd/ca"), "pki/etcd/peer.crt": ("etcd-peer", "etcd/ca"),
          "pki/etcd/healthcheck-client.crt": ("etcd-healthcheck-client", "etcd/ca"),
          "admin.conf": ("admin.conf", "ca"), "super-admin.conf": ("super-admin.conf", "ca"),
          "controller-manager.conf": ("controller-manager.conf", "ca"), "scheduler.conf": ("scheduler.conf", "ca")}


def issue_kubeadm_certs_short(env: Env, cp: str) -> None:
    env.lab.exec(cp, ["sudo", "bash", "-c", f"printf '%s' '{SHORT}' > /root/kf-short.yaml && "
                      "kubeadm certs renew all --config /root/kf-short.yaml >/dev/null"])


def certs_check(env: Env) -> tuple[int, dict]:
    res = env.kf("certs", "check", "--within-days", "30", "-o", "json")
    assert res.returncode in (0, 9), res.stdout[-2000:] + res.stderr[-2000:]
    return res.returncode, json.loads(res.stdout)


def unverified_leaves(env: Env, cp: str) -> list[str]:
    """Every kubeadm leaf on ``cp`` that `openssl verify` refuses against its CA (none missing either)."""
    lines = ["cd /etc/kubernetes", "bad=''"]
    for leaf, (_, ca) in LEAVES.items():
        if leaf.endswith(".conf"):  # super-admin.conf is only where kubeadm init ran
            lines.append(f"if [ -f {leaf} ]; then "
                         f"sed -n 's/^ *client-certificate-data: *//p' {leaf} | base64 -d > /tmp/kf-leaf.crt; "
                         f"openssl verify -CAfile pki/{ca}.crt /tmp/kf-leaf.crt >/dev/null || bad=\"$bad {leaf}\"; fi")
        else:
            lines.append(f"openssl verify -CAfile pki/{ca}.crt {leaf} >/dev/null || bad=\"$bad {leaf}\"")
    lines.append('echo "$bad"')
    return env.lab.exec(cp, ["sudo", "bash", "-c", "\n".join(lines)]).stdout.split()


def kubeadm_findings(doc: dict, hosts: tuple[str, ...]) -> list[dict]:
    return [f for f in doc["hosts"] if f["host"] in hosts and f.get("owner", "").startswith("kubeadm:")]


def pod_starts(env: Env, cp: str) -> dict[str, str]:
    """The simulator's record of each static pod's current "container": etcd's and the API server's
    process ids, the controller manager's and scheduler's start times."""
    files = ("etcd.pid", "kube-apiserver.pid", "kube-controller-manager.started", "kube-scheduler.started")
    out = env.lab.exec(cp, ["sudo", "bash", "-c", "; ".join(f"echo $(cat /run/kubesim/{f} 2>/dev/null)" for f in files)]).stdout
    return dict(zip(files, out.splitlines(), strict=True))


def latest_run(env: Env, workflow: str) -> Path:
    """The newest run directory of ``workflow`` (named <time>Z-<workflow>, a suffix when two start together)."""
    name = YAML(typ="safe").load(env.inventory.read_text())["metadata"]["name"]
    runs = [p for p in (env.dir / ".kubeforge" / name / "runs").iterdir()
            if f"Z-{workflow}" in p.name and (p / "journal.jsonl").exists()]
    return max(runs, key=lambda p: (p / "journal.jsonl").stat().st_mtime)


def renew_kubeadm_certs_under_a_writer(env: Env, short_on: tuple[str, ...], tmp_path: Path) -> None:
    """kubeadm's certificates on ``short_on`` issued for 20 days: `certs check` finds every one (exit 9),
    `certs renew` renews them (one control plane at a time, each static pod restarted and gated) with
    a writer and a quorum watcher running, `certs check` finds nothing left within 30 days, every leaf
    verifies against its CA, the controller manager and scheduler answer healthy on the new files."""
    for cp in short_on:
        issue_kubeadm_certs_short(env, cp)
    code, doc = certs_check(env)
    found = kubeadm_findings(doc, short_on)
    assert code == 9 and found and all(f["expiring"] and f["daysLeft"] <= 20 for f in found), found
    names = {f["owner"].split(":", 1)[1] for f in found}
    assert names == {name for name, _ in LEAVES.values()} - ({"super-admin.conf"} if "cp-1" not in short_on else set()), names
    local_admin = env.dir / ".kubeforge" / YAML(typ="safe").load(env.inventory.read_text())["metadata"]["name"] / "admin.conf"
    if "cp-1" in short_on:  # the local copy is fetched from the first control plane: it must follow
        res = env.kf("kubeconfig")
        assert res.returncode == 0 and local_admin.is_file(), res.stdout + res.stderr
    before = {cp: pod_starts(env, cp) for cp in short_on}
    res, elapsed, writer, watcher, lost = kf_under_writes(env, tmp_path, "renew", "certs", "renew", "--within-days", "30",
                                                          "--yes")
    print(f"certs renew of kubeadm's certificates on {', '.join(short_on)}: {elapsed:.1f} s, {len(writer.acked)} "
          f"writes acknowledged, {len(lost)} lost, {writer.failed} refused, longest gap without a linearizable read "
          f"{max(watcher.gaps(), default=0.0):.1f} s")
    assert writer.acked and lost == [], lost
    assert watcher.losses() == [], watcher.gaps()
    # per control plane, in turn: kubeadm renewed, then each static pod gone and back (a restart step
    # fails when its pod still answers with the manifest away) and gated before the next one
    records = [r for r in map(json.loads, (latest_run(env, "certs-renew") / "journal.jsonl").read_text().splitlines())
               if r.get("type") == "step" and r.get("phase") == "RenewControlPlanes"]
    lanes = {cp: [r["step"].split("/", 2)[2] for r in records if r["host"] == cp] for cp in short_on}
    assert [cp for cp in dict.fromkeys(r["host"] for r in records)] == list(short_on), records
    assert all(r["status"] == "done" for r in records), records
    for cp in short_on:
        assert lanes[cp] == ["kubeadm-renew", "restart-etcd-pod", f"gate-etcd-{cp}", "restart-apiserver", f"gate-api-{cp}",
                             "restart-kube-controller-manager", f"gate-kube-controller-manager-{cp}",
                             "restart-kube-scheduler", f"gate-kube-scheduler-{cp}"], lanes[cp]
    for cp in short_on:  # each static pod really started again (a new process, a new start)
        after = pod_starts(env, cp)
        assert all(after[p] and after[p] != before[cp][p] for p in after), (cp, before[cp], after)
    print("  " + ", ".join(f"{r['step'].split('/', 2)[2]} {r['duration']:.1f} s" for r in records))
    code, doc = certs_check(env)
    assert code == 0 and not [f for f in doc["hosts"] if f["expiring"]], [f for f in doc["hosts"] if f["expiring"]]
    assert all(f["daysLeft"] >= 300 for f in kubeadm_findings(doc, short_on))
    assert {cp: unverified_leaves(env, cp) for cp in CPS} == {cp: [] for cp in CPS}
    for cp in short_on:
        for port in (10257, 10259):
            env.lab.exec(cp, ["curl", "-fsSk", f"https://127.0.0.1:{port}/healthz"])
    assert sorted(m["name"] for m in env.status() if m["healthy"]) == list(CPS)
    if "cp-1" in short_on:
        on_host = env.lab.exec("cp-1", ["sudo", "sed", "-n", "s/^ *client-certificate-data: *//p",
                                        "/etc/kubernetes/admin.conf"]).stdout.strip()
        assert on_host and on_host in local_admin.read_text(), "the local admin.conf was not refreshed"


def kf_under_writes(env, tmp_path: Path, tag: str, *args: str, timeout: float = 600):
    """Run kubeforge while tests/faults' quorum watcher and writer work on the stacked members with
    cp-1's etcd healthcheck client: (result, seconds, writer, watcher, acknowledged keys lost)."""
    from tests.faults.etcdwire import ClientCerts, QuorumWatcher, Writer

    pki = tmp_path / "pki"
    pki.mkdir(mode=0o700)
    for name in ("ca.crt", "healthcheck-client.crt", "healthcheck-client.key"):
        (pki / name).touch(mode=0o600)
        (pki / name).write_text(env.lab.exec("cp-1", ["sudo", "cat", f"{PKI}/{name}"]).stdout)
    certs = ClientCerts(pki / "ca.crt", pki / "healthcheck-client.crt", pki / "healthcheck-client.key")
    addresses = [env.lab.address(cp) for cp in CPS]
    watcher, writer = QuorumWatcher(addresses, certs), Writer(addresses, certs, tag=f"{tag}-{time.time_ns()}")
    watcher.start()
    writer.start()
    started = time.monotonic()
    try:
        res = env.kf(*args, timeout=timeout)
    finally:
        elapsed = time.monotonic() - started
        writer.stop()
        watcher.stop()
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res, elapsed, writer, watcher, writer.lost(addresses, certs)


def test_kubeadms_certificates_issued_short_on_one_control_plane_are_found_renewed_and_verify_with_etcd_healthy(
        env, tmp_path):
    renew_kubeadm_certs_under_a_writer(env, ("cp-2",), tmp_path)


@pytest.mark.by_hand  # all three control planes one at a time; figures in docs/certs.md
def test_kubeadms_certificates_issued_short_everywhere_are_renewed_one_control_plane_at_a_time(env, tmp_path):
    renew_kubeadm_certs_under_a_writer(env, CPS, tmp_path)


def test_restore_brings_back_the_deleted_key_and_node_and_keeps_every_old_data_dir(env):
    env.etcdctl("cp-1", "put", MARKER, "before-backup")
    nodes = env.nodes()
    backup = env.kf("etcd", "backup")
    assert backup.returncode == 0, backup.stdout + backup.stderr

    env.etcdctl("cp-2", "del", MARKER)
    env.lab.exec("cp-1", [*KUBECTL, "delete", "node", "cp-3"], check=True)
    assert env.etcdctl("cp-1", "get", MARKER, "--print-value-only").stdout.strip() == ""
    assert "cp-3" not in env.nodes()

    res = env.kf("etcd", "restore", "--from", "latest", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    for cp in CPS:
        assert env.etcdctl(cp, "get", MARKER, "--print-value-only").stdout.strip() == "before-backup"
        kept = env.lab.exec(cp, ["bash", "-c", "sudo ls -d /var/lib/etcd.kubeforge-*/member"], check=False)
        assert kept.returncode == 0, f"{cp}: the old data dir was not kept aside"
        manifests = env.lab.exec(cp, ["sudo", "ls", "/etc/kubernetes/manifests"], check=True).stdout.split()
        assert {"etcd.yaml", "kube-apiserver.yaml"} <= set(manifests), f"{cp}: {manifests}"
    assert env.nodes() == nodes
    members = env.status()
    assert all(m["healthy"] for m in members) and sum(m["is_leader"] for m in members) == 1


def test_a_restore_that_an_interruption_left_half_done_converges_on_a_rerun(env):
    # what an interrupted run leaves: cp-1's manifests out of the kubelet's directory, its etcd gone
    env.lab.exec("cp-1", ["bash", "-c", "sudo mv /etc/kubernetes/manifests/kube-apiserver.yaml "
                                        "/etc/kubernetes/kube-apiserver.yaml.kubeforge-restore && "
                                        "sudo mv /etc/kubernetes/manifests/etcd.yaml "
                                        "/etc/kubernetes/etcd.yaml.kubeforge-restore"], check=True)
    deadline = time.monotonic() + 30
    while etcd_processes(env, "cp-1") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not etcd_processes(env, "cp-1"), "the kubelet did not stop etcd when its manifest went"

    res = env.kf("etcd", "restore", "--from", "latest", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for cp in CPS:
        assert len(etcd_processes(env, cp)) == 1
        assert env.lab.exec(cp, ["test", "-e", "/etc/kubernetes/manifests/kube-apiserver.yaml"], check=False).returncode == 0
    assert env.etcdctl("cp-3", "get", MARKER, "--print-value-only").stdout.strip() == "before-backup"
    assert env.nodes() == set(CPS)


def test_an_inventory_that_disagrees_with_the_etcd_manifests_is_refused_before_any_change(env):
    swapped = write_inventory(env.lab.write_inventory(env.dir / "lab-again.yaml"), env.dir / "swapped.yaml",
                              swap_addresses=True)
    before = {cp: env.lab.exec(cp, ["bash", "-c", "sudo ls -d /var/lib/etcd*; sudo ls /etc/kubernetes/manifests"],
                               check=True).stdout for cp in CPS}
    res = env.kf("etcd", "restore", "--from", "latest", "--yes", inventory=swapped)
    assert res.returncode == 7, res.stdout + res.stderr
    assert "do not match the inventory" in res.stderr and "cp-2" in res.stderr
    after = {cp: env.lab.exec(cp, ["bash", "-c", "sudo ls -d /var/lib/etcd*; sudo ls /etc/kubernetes/manifests"],
                              check=True).stdout for cp in CPS}
    assert after == before


def test_an_upgrade_with_another_control_plane_notready_is_refused_before_any_change(env):
    """kubeadm's own health check (ControlPlaneNodesReady) would stop `upgrade apply`; kubeforge refuses
    first, from its facts, with exit 7 and nothing touched: no package, manifest or etcd member moves."""
    manifests = {cp: env.lab.exec(cp, ["sudo", "sha256sum", "/etc/kubernetes/manifests/etcd.yaml",
                                       "/etc/kubernetes/manifests/kube-apiserver.yaml"]).stdout for cp in CPS}
    env.lab.exec("cp-3", ["sudo", "systemctl", "stop", "kubelet"])
    try:
        deadline = time.monotonic() + 60
        while "NotReady" not in env.lab.exec("cp-1", [*KUBECTL, "get", "node", "cp-3"], check=False).stdout:
            assert time.monotonic() < deadline, "cp-3 never turned NotReady with its kubelet stopped"
            time.sleep(1)
        res = env.kf("upgrade", "--to", UPGRADE_TO, "--yes")
        assert res.returncode == 7, res.stdout[-2000:] + res.stderr[-2000:]
        out = res.stdout + res.stderr
        assert "the cluster is not healthy: node cp-3 NotReady" in out and "Nothing was changed" in out, out
        assert {cp: env.lab.exec(cp, ["sudo", "sha256sum", "/etc/kubernetes/manifests/etcd.yaml",
                                      "/etc/kubernetes/manifests/kube-apiserver.yaml"]).stdout for cp in CPS} == manifests
    finally:
        env.lab.exec("cp-3", ["sudo", "systemctl", "start", "kubelet"])
    deadline = time.monotonic() + 60
    while env.lab.exec("cp-1", [*KUBECTL, "wait", "--for=condition=Ready", "node/cp-3", "--timeout=5s"],
                       check=False).returncode:
        assert time.monotonic() < deadline, "cp-3 not Ready again after its kubelet started"


def pinned_tag(version: str) -> str:
    """kubeadm's etcd image tag for the minor of ``version``, as kubeforge's version data has it."""
    from kubeforge.model.versions import raw_data

    return raw_data()["kubernetes"]["minors"][".".join(version.split(".")[:2])]["etcdImageTag"]


def etcd_images(env: Env) -> dict[str, tuple[str, str]]:
    """Per control plane: the etcd manifest's image tag, and the tag the running member started from."""
    out = {}
    for cp in CPS:
        manifest = env.lab.exec(cp, ["sudo", "grep", "-o", "registry.k8s.io/etcd:[^\" ]*",
                                     "/etc/kubernetes/manifests/etcd.yaml"]).stdout.strip().rsplit(":", 1)[1]
        running = env.lab.exec(cp, ["sudo", "cat", "/run/kubesim/etcd.image"], check=False).stdout.strip()
        out[cp] = (manifest, running)
    return out


def test_upgrade_across_kubeadms_etcd_minor_keeps_quorum_and_every_acknowledged_write(env, tmp_path):
    """1.33 -> 1.34 moves kubeadm's etcd from a 3.5 to a 3.6 pin: kubeadm restarts each control plane's
    member on the new image, kubeforge waits for all members healthy before the next control plane.
    A writer and a quorum watcher (the fault matrix's, over the lab bridge) run throughout."""

    before, after = pinned_tag("1.33.5"), pinned_tag(UPGRADE_TO)
    assert before.split(".")[:2] != after.split(".")[:2]  # the data still crosses an etcd minor here
    assert set(etcd_images(env).values()) == {(before, before)}
    res, elapsed, writer, watcher, lost = kf_under_writes(env, tmp_path, "stacked", "upgrade", "--to", UPGRADE_TO, "--yes",
                                                          timeout=1500)
    print(f"stacked etcd crossing {before} -> {after}: upgrade {elapsed:.0f} s, {len(writer.acked)} writes "
          f"acknowledged, {writer.failed} refused, longest gap without a linearizable read "
          f"{max(watcher.gaps(), default=0.0):.1f} s")
    assert writer.acked and lost == [], lost
    assert watcher.losses() == [], watcher.gaps()
    assert etcd_images(env) == {cp: (after, after) for cp in CPS}
    assert sorted(m["name"] for m in env.status() if m["healthy"]) == list(CPS)
    # each control plane's member moved, then all three were healthy, before the next one's kubeadm ran
    steps = [json.loads(line).get("step", "") for line in (latest_run(env, "upgrade") / "journal.jsonl").read_text().splitlines()
             if line.strip()]
    moves = [s for s in steps if "kubeadm-upgrade-apply" in s or "kubeadm-upgrade-node" in s or "etcd-healthy" in s]
    assert len(moves) == 2 * len(CPS) and all("etcd-healthy" in s for s in moves[1::2]), moves
    # the module's later tests run against the upgraded cluster
    doc = YAML(typ="safe").load(env.inventory.read_text())
    doc["spec"]["kubernetesVersion"] = UPGRADE_TO
    with env.inventory.open("w") as f:
        YAML().dump(doc, f)


def test_reset_of_a_control_plane_leaves_no_node_object_and_no_etcd_member(env):
    # kubeadm reset removes the local etcd member but (as the real one) never the Node: kubeforge must
    res = env.kf("reset", "--hosts", "cp-3", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert env.nodes() == {"cp-1", "cp-2"}
    listed = env.etcdctl("cp-1", "member", "list").stdout
    assert "cp-3" not in listed and listed.count("started") == 2, listed
    assert not etcd_processes(env, "cp-3")

KUBELET_SLOW = "/etc/systemd/system/kubelet.service.d/zz-test-slow-start.conf"


def test_up_rejoins_the_reset_control_plane_after_its_join_was_stopped_half_way(env):
    """The up that joins cp-3 again is stopped (SIGTERM) while kubeadm join waits for cp-3's kubelet
    (a drop-in makes its start take minutes): the join has written the static Pod manifests and added
    cp-3's etcd member. Then the kubelet runs: the member starts and fills /var/lib/etcd, the Node is
    there but never marked a control plane. A rerun of the join would fail kubeadm's preflight, so the
    resume removes the member from cp-1 first, resets cp-3, deletes its Node and joins it again."""
    lab = env.lab
    lab.exec("cp-3", ["sudo", "bash", "-c", f"mkdir -p $(dirname {KUBELET_SLOW}) && printf '[Service]\\nExecStartPre="
                                            f"/bin/sleep 600\\nTimeoutStartSec=900\\n' > {KUBELET_SLOW}"], check=True)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "kubeforge", "up", "--yes", "-i", str(env.inventory)], cwd=env.dir,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (lab.exec("cp-3", ["sudo", "test", "-e", "/etc/kubernetes/manifests/etcd.yaml"]).returncode == 0
                    and lab.exec("cp-3", ["systemctl", "is-active", "kubelet"]).stdout.strip() == "activating"):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 8 and "interrupted [cp-3] kubeadm join as a control plane" in out, out[-3000:]
    finally:  # the operator lets the kubelet start: it runs the etcd member and API server of the manifests left
        lab.exec("cp-3", ["sudo", "bash", "-c", f"rm -f {KUBELET_SLOW}; systemctl daemon-reload; "
                                                "systemctl restart --no-block kubelet"], check=True)
    deadline = time.monotonic() + 90
    while f"started, cp-3, https://{lab.address('cp-3')}:2380" not in env.etcdctl("cp-1", "member", "list").stdout:
        assert time.monotonic() < deadline, "cp-3's half-added etcd member never started"
        time.sleep(0.5)
    assert lab.exec("cp-3", ["sudo", "test", "-d", "/var/lib/etcd/member"]).returncode == 0
    labels = json.loads(lab.exec("cp-1", [*KUBECTL, "get", "node", "cp-3", "-o", "json"], check=True).stdout)["metadata"]["labels"]
    assert "node-role.kubernetes.io/control-plane" not in labels

    res = env.kf("up", "--yes", "--resume")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for line in ("Remove the etcd member cp-3's stopped join added … done",
                 "kubeadm reset: an earlier kubeadm join stopped before this control plane was marked … done",
                 "Delete node cp-3 (its join starts over) … done", "kubeadm join as a control plane … done"):
        assert line in res.stdout + res.stderr, res.stdout[-3000:]
    assert env.nodes() == {"cp-1", "cp-2", "cp-3"}
    labels = json.loads(lab.exec("cp-1", [*KUBECTL, "get", "node", "cp-3", "-o", "json"], check=True).stdout)["metadata"]["labels"]
    assert "node-role.kubernetes.io/control-plane" in labels
    listed = env.etcdctl("cp-1", "member", "list").stdout
    assert listed.count("started") == 3 and listed.count(f"https://{lab.address('cp-3')}:2380") == 1, listed
    assert len(etcd_processes(env, "cp-3")) == 1


def test_node_remove_of_a_stacked_control_plane_removes_its_member_first_and_the_api_answers_throughout(env):
    """cp-3 leaves: its etcd member is removed by cp-1 before kubeadm reset runs on it, etcd keeps
    2 of 2 healthy, and kubectl through the endpoint (cp-1) answers at every poll while it runs."""
    from tests.integration.polling import while_polling

    def api() -> str | None:
        res = env.lab.exec("cp-1", [*KUBECTL, "get", "nodes", "-o", "name"], check=False, timeout=30)
        return res.stderr.strip()[-200:] if res.returncode else None

    res, polls, failures = while_polling(api, lambda: env.kf("node", "remove", "cp-3", "--yes"), 0.5)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 control planes with stacked etcd" in " ".join(res.stdout.split())  # the note on what the inventory needs next
    assert polls >= 3 and failures == [], failures

    listed = env.etcdctl("cp-1", "member", "list").stdout
    assert "cp-3" not in listed and all(f"started, {cp}," in listed for cp in ("cp-1", "cp-2")), listed
    # every member etcd lists answers healthy (an inventory of 2 stacked control planes is one kubeforge
    # refuses to load: the operator adds a third in the edit that deletes cp-3)
    health = env.etcdctl("cp-1", "endpoint", "health", "--cluster", check=False)
    assert health.returncode == 0 and (health.stdout + health.stderr).count("is healthy") == 2, health.stdout + health.stderr
    assert env.nodes() == {"cp-1", "cp-2"}
    assert not etcd_processes(env, "cp-3")

    name = YAML(typ="safe").load(env.inventory.read_text())["metadata"]["name"]
    runs = env.dir / ".kubeforge" / name / "runs"
    run = max((p for p in runs.iterdir() if (p / "journal.jsonl").exists()), key=lambda p: (p / "journal.jsonl").stat().st_mtime)
    order = [json.loads(line).get("phase") for line in (run / "journal.jsonl").read_text().splitlines() if line.strip()]
    assert order.index("RemoveEtcdMember-cp-3") < order.index("ResetNodes")

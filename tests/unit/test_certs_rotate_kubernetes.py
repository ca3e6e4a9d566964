"""`certs rotate-ca --ca kubernetes`: the store's rotation (the new cluster CA and every leaf it signs
written once; one CA's rotation at a time; only ca.crt/ca.key handed to the store at the end), what
each phase puts on each node (checked with the real `openssl verify`, the kubeconfig edits run with
the real bash and sed), the phase plan as data (order, rolling lanes, restarts, resume from the
store's record) and the command's refusals."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.errors import CheckFailed, SafetyRefusal
from kubeforge.facts.kubeconfigs import KUBELET_CURRENT, Kubeconfig, NodeKubeconfigs, parse, probe_command
from kubeforge.model import EtcdTopology
from kubeforge.model.cluster import EndpointMode
from kubeforge.pki import ca_rotation, crypto, ensure_pki
from kubeforge.plan.certs.rotate_kubernetes import edit_ca_data, link_kubelet_pem, render_kubeconfig
from kubeforge.plan.steps import GateStep, LocalStep, PutFileStep, RunStep
from kubeforge.workflows.certs_rotate import cluster_info_configmap, kubernetes_plan, update_local_admin
from tests.factories import make_cluster
from tests.unit.test_certs_rotate_ca import verify as openssl_verifies

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PKI = "/etc/kubernetes/pki"
CPS, WORKERS = ("cp-1", "cp-2"), ("worker-1", "worker-2")
SANS = ("10.96.0.1", "10.77.4.14", "cp-1", "k8s.example", "kubernetes", "kubernetes.default",
        "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
STEMS = ("TrustBothClusterCAs", "ReissueClusterLeaves", "DropOldClusterCA")
SERVER = "https://k8s.example:6443"


@pytest.fixture(params=[EtcdTopology.EXTERNAL, EtcdTopology.STACKED], ids=["external-etcd", "stacked-etcd"])
def cluster(request, tmp_path: Path):
    c = make_cluster(tmp_path, topology=request.param)
    ensure_pki(c, now=NOW)
    return c


def start(cluster, **kw):
    return ca_rotation.start(cluster, ca="kubernetes", now=NOW, apiserver_sans={cp: SANS for cp in CPS},
                             kubelets=[*CPS, *WORKERS], **kw)


def kubeconfigs(pem_on: tuple[str, ...] = ("worker-2",)) -> dict[str, NodeKubeconfigs]:
    """What the probe reads on kubeadm's nodes: the control planes' four kubeconfigs (super-admin.conf
    on the first alone), kubelet.conf everywhere; on ``pem_on`` the kubelet's client certificate in its
    rotating store (kubeadm's join), elsewhere embedded."""
    out = {}
    for h in (*CPS, *WORKERS):
        names = {"kubelet.conf": f"system:node:{h}"}
        if h in CPS:
            names |= {"admin.conf": "kubernetes-admin", "controller-manager.conf": "system:kube-controller-manager",
                      "scheduler.conf": "system:kube-scheduler"}
        if h == "cp-1":
            names["super-admin.conf"] = "kubernetes-super-admin"
        confs = {n: Kubeconfig(SERVER, "kubernetes", u, f"{u}@kubernetes",
                               KUBELET_CURRENT if n == "kubelet.conf" and h in pem_on else "",
                               KUBELET_CURRENT if n == "kubelet.conf" and h in pem_on else "")
                 for n, u in names.items()}
        out[h] = NodeKubeconfigs(h, confs, kubelet_pem=h in pem_on, has_ca=True)
    return out


def plan_for(cluster, r, phases_done: int = 0, pem_on=("worker-2",)):
    return kubernetes_plan(cluster, replace_done(r, phases_done), kubeconfigs(pem_on), list(CPS), list(WORKERS),
                           not_set_up=["cp-3"])


def replace_done(r, n: int):
    from dataclasses import replace

    return replace(r, state=replace(r.state, phases_done=n))


def kubeadms_leaf(old_ca, cn: str, org: str | None = None, sans=(), server=False) -> bytes:
    """What kubeadm issued on a node at init/join: a leaf from the old cluster CA."""
    key = crypto.generate_key("ecdsa-p256")
    spec = crypto.LeafSpec(cn=cn, org=org, usages=(crypto.SERVER_AUTH if server else crypto.CLIENT_AUTH,), sans=sans)
    return crypto.cert_to_pem(crypto.issue_leaf(spec, key, old_ca.cert, crypto.load_key(old_ca.key_pem), days=365,
                                                now=NOW))


def lane_files(plan, phase: str, host: str) -> dict[str, bytes]:
    lane = next(lane for p in plan.phases if p.name == phase for lane in p.lanes if lane.host == host)
    return {s.file.path.removesuffix(".kubeforge-next"): s.file.content for s in lane.steps
            if isinstance(s, PutFileStep)}


def ca_data(kubeconfig: bytes) -> bytes:
    m = re.search(rb"certificate-authority-data: (\S+)", kubeconfig)
    assert m is not None
    return base64.b64decode(m.group(1))


def client_data(kubeconfig: bytes) -> bytes:
    m = re.search(rb"client-certificate-data: (\S+)", kubeconfig)
    assert m is not None
    return base64.b64decode(m.group(1))


# --- the store -------------------------------------------------------------------------------------


def test_the_new_cluster_ca_and_its_leaves_are_written_once_private_and_the_other_cas_are_left_alone(cluster):
    others = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}
    first = start(cluster)
    assert isinstance(first, ca_rotation.ClusterRotation) and first.state.ca == "kubernetes"
    root = ca_rotation.rotation_dir(cluster, "kubernetes")
    assert root.name == "kubernetes-ca"
    assert (root / "ca.key").stat().st_mode & 0o777 == 0o600 and root.stat().st_mode & 0o777 == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in root.rglob("*.key"))
    assert json.loads((root / "state.json").read_text())["phasesDone"] == 0
    again = start(cluster)
    assert again.new_ca.cert_pem == first.new_ca.cert_pem and again.new_ca.key_pem == first.new_ca.key_pem
    assert {k: v.cert_pem for k, v in again.leaves.items()} == {k: v.cert_pem for k, v in first.leaves.items()}
    # the main store (etcd and front-proxy CAs, sa keys, the old cluster CA) untouched until the commit
    assert {p: p.read_bytes() for p in others} == others
    assert first.new_ca.cert.subject == first.old.kube_ca.cert.subject  # kubeadm's CN, kubernetes


def test_the_leaves_keep_kubeadms_subjects_and_the_api_servers_names(cluster):
    r = start(cluster)
    subject = {k: v.cert.subject.rfc4514_string() for k, v in r.leaves.items()}
    assert subject["apiserver/cp-1"] == "CN=kube-apiserver"
    assert sorted(crypto.cert_sans(r.leaf("apiserver", "cp-2").cert)) == sorted(SANS)
    assert subject["apiserver-kubelet-client/cp-1"] == "CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins"
    assert subject["admin.conf/cp-2"] == "CN=kubernetes-admin,O=kubeadm:cluster-admins"
    assert subject["super-admin.conf/cp-1"] == "CN=kubernetes-super-admin,O=system:masters"
    assert subject["controller-manager.conf/cp-1"] == "CN=system:kube-controller-manager"
    assert subject["scheduler.conf/cp-1"] == "CN=system:kube-scheduler"
    assert subject["kubelet/worker-2"] == "CN=system:node:worker-2,O=system:nodes"
    assert not any(k.endswith("/cp-3") for k in r.leaves)  # not set up: nothing issued for it
    assert all(crypto.signed_by(v.cert, r.new_ca.cert) for v in r.leaves.values())


def test_one_cas_rotation_at_a_time_and_ensure_pki_is_refused_naming_the_cluster_ca_rotation(cluster):
    start(cluster)
    with pytest.raises(SafetyRefusal, match=r"rotation of the kubernetes CA is in progress \(0 of 3") as exc:
        ensure_pki(cluster, now=NOW)
    assert "--ca kubernetes" in exc.value.hint and exc.value.exit_code == 7
    with pytest.raises(SafetyRefusal, match="rotation of the kubernetes CA is in progress"):
        ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    assert not ca_rotation.rotation_dir(cluster, "front-proxy").exists()


def test_the_commit_hands_the_store_the_new_cluster_ca_alone_and_joins_pin_it(cluster):
    r = start(cluster)
    old_hash = r.old.kube_ca_cert_hash
    before = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*")
              if p.is_file() and "rotation" not in p.parts and p.name not in ("ca.crt", "ca.key")}
    before |= {cluster.pki_dir / "etcd" / n: (cluster.pki_dir / "etcd" / n).read_bytes() for n in ("ca.crt", "ca.key")}
    with pytest.raises(Exception, match="still trusted on the hosts"):
        ca_rotation.commit(cluster, "kubernetes")
    for n in (1, 2, 3):
        ca_rotation.record(cluster, n, "kubernetes")
    assert ca_rotation.commit(cluster, "kubernetes") is True
    assert ca_rotation.commit(cluster, "kubernetes") is False
    assert (cluster.pki_dir / "ca.crt").read_bytes() == r.new_ca.cert_pem
    assert (cluster.pki_dir / "ca.key").read_bytes() == r.new_ca.key_pem
    assert (cluster.pki_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert not ca_rotation.rotation_dir(cluster, "kubernetes").exists()
    assert not (cluster.pki_dir / "apiserver").exists()  # the leaves are the hosts', not the store's
    assert {p: p.read_bytes() for p in before} == before  # etcd and front-proxy CAs, sa keys, etcd leaves
    again = ensure_pki(cluster, now=NOW)
    assert [c for c in again.changes if c.action != "unchanged"] == []
    # the discovery-token-ca-cert-hash of later joins is the new CA's
    assert again.bundle.kube_ca_cert_hash == crypto.spki_sha256(r.new_ca.cert) != old_hash


# --- what each phase places (real openssl) -----------------------------------------------------------


def test_every_phase_leaves_every_leaf_trusted_until_the_old_cluster_ca_is_dropped(cluster, tmp_path):
    r = start(cluster)
    old = r.old.kube_ca
    old_leaves = [kubeadms_leaf(old, "kube-apiserver", sans=SANS, server=True),
                  kubeadms_leaf(old, "kubernetes-admin", "kubeadm:cluster-admins"),
                  kubeadms_leaf(old, "system:node:worker-1", "system:nodes")]
    new_leaves = [v.cert_pem for v in r.leaves.values()]
    plans = {n: plan_for(cluster, r, n - 1) for n in (1, 2, 3)}
    for n, stem in enumerate(STEMS, 1):
        plan = plans[n]
        cp = lane_files(plan, f"{stem}OnControlPlanes", "cp-1")
        worker = lane_files(plan, f"{stem}OnWorkers", "worker-1")
        bundles = [cp[f"{PKI}/ca.crt"], worker[f"{PKI}/ca.crt"]]
        # the key beside ca.crt is the first CA's: what kubeadm and the controller manager sign with
        assert crypto.same_public_key(crypto.load_cert(cp[f"{PKI}/ca.crt"]), crypto.load_key(cp[f"{PKI}/ca.key"]))
        assert f"{PKI}/ca.key" not in worker  # kubeadm join puts no key on a worker
        if n == 1:
            # the kubeconfigs keep kubeadm's client certificates: only their CA line is set, to ca.crt's
            edit = next(s for p in plan.phases if p.name == f"{stem}OnControlPlanes" for lane in p.lanes
                        for s in lane.steps if isinstance(s, RunStep) and s.key == "kubeconfig-ca-data")
            assert base64.b64encode(cp[f"{PKI}/ca.crt"]).decode() in edit.command.script
            assert not any(p.endswith(".conf") for p in cp)
        else:
            confs = {p: c for p, c in {**cp, **worker}.items() if p.endswith(".conf")}
            assert sorted(confs) == [f"/etc/kubernetes/{n}" for n in (
                "admin.conf", "controller-manager.conf", "kubelet.conf", "scheduler.conf", "super-admin.conf")]
            bundles += [ca_data(c) for c in confs.values()]
            for c in confs.values():
                assert openssl_verifies(tmp_path, r.new_ca.cert_pem, client_data(c))
        if n == 2:
            assert openssl_verifies(tmp_path, r.new_ca.cert_pem, cp[f"{PKI}/apiserver.crt"])
            assert openssl_verifies(tmp_path, r.new_ca.cert_pem, cp[f"{PKI}/apiserver-kubelet-client.crt"])
        for bundle in bundles:
            for leaf in new_leaves:
                assert openssl_verifies(tmp_path, bundle, leaf), (n, leaf[:60])
            for leaf in old_leaves:
                assert openssl_verifies(tmp_path, bundle, leaf) == (n < 3), n
    # the old CA alone does not trust the new leaves: phase 1 must be everywhere before phase 2
    assert not openssl_verifies(tmp_path, r.old.kube_ca.cert_pem, new_leaves[0])


def test_the_kubelets_rotating_store_gets_a_new_file_and_current_points_at_it(cluster, tmp_path):
    r = start(cluster)
    plan = plan_for(cluster, r, 1)
    w2 = lane_files(plan, "ReissueClusterLeavesOnWorkers", "worker-2")
    pem = next(p for p in w2 if p.startswith("/var/lib/kubelet/pki/kubelet-client-2026-"))
    assert openssl_verifies(tmp_path, r.new_ca.cert_pem, w2[pem])
    assert b"PRIVATE KEY" in w2[pem]  # cert and key in one file, as the kubelet's store keeps them
    conf = w2["/etc/kubernetes/kubelet.conf"].decode()
    assert f"client-certificate: {KUBELET_CURRENT}" in conf and "client-key-data" not in conf
    w1 = lane_files(plan, "ReissueClusterLeavesOnWorkers", "worker-1")
    assert not any(p.startswith("/var/lib/kubelet") for p in w1)  # embedded in its kubelet.conf instead
    # the link, with the real ln and mv: a symlink (the kubelet refuses to rotate a regular file there)
    link, linked = link_kubelet_pem(pem)
    store = tmp_path / "pki"
    store.mkdir()
    old = store / "kubelet-client-2025.pem"
    old.write_text("old")
    cur = store / "kubelet-client-current.pem"
    cur.symlink_to(old)
    (store / Path(pem).name).write_bytes(w2[pem])

    def run(cmd) -> int:
        script = cmd.script.replace("/var/lib/kubelet/pki", str(store))
        return subprocess.run(["bash", "-c", script], capture_output=True).returncode

    assert run(linked) != 0 and run(link) == 0 and run(linked) == 0
    assert cur.is_symlink() and os.readlink(cur) == str(store / Path(pem).name)


def test_the_phase_one_edit_sets_only_the_ca_data_of_each_kubeconfig(cluster, tmp_path):
    r = start(cluster)
    conf = Kubeconfig(SERVER, "kubernetes", "kubernetes-admin", "kubernetes-admin@kubernetes")
    client = r.leaf("admin.conf", "cp-1")
    original = render_kubeconfig(conf, r.old.kube_ca.cert_pem, client)
    path = tmp_path / "admin.conf"
    path.write_bytes(original)
    path.chmod(0o600)
    bundle = r.ca_for_phase(1).cert_pem
    edit, guard = edit_ca_data(["/etc/kubernetes/admin.conf"], bundle)

    def run(cmd) -> int:
        return subprocess.run(["bash", "-c", cmd.script.replace("/etc/kubernetes/admin.conf", str(path))],
                              capture_output=True).returncode

    assert run(guard) != 0 and run(edit) == 0 and run(guard) == 0 and run(edit) == 0
    edited = path.read_bytes()
    assert ca_data(edited) == bundle and client_data(edited) == client.cert_pem
    assert edited == render_kubeconfig(conf, bundle, client)  # nothing else changed
    assert path.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in edit.script and "client-key" not in edit.script


def test_the_probe_reads_the_names_of_kubeadms_kubeconfigs_and_never_a_key(cluster, tmp_path):
    r = start(cluster)
    etc = tmp_path / "etc"
    etc.mkdir()
    conf = Kubeconfig(SERVER, "kubernetes", "system:node:cp-1", "system:node:cp-1@kubernetes")
    (etc / "kubelet.conf").write_bytes(render_kubeconfig(conf, r.old.kube_ca.cert_pem, r.leaf("kubelet", "cp-1")))
    pem_conf = Kubeconfig("https://10.77.4.14:6443", "kubernetes", "kubernetes-admin", "kubernetes-admin@kubernetes",
                          KUBELET_CURRENT, KUBELET_CURRENT)
    (etc / "admin.conf").write_bytes(render_kubeconfig(pem_conf, r.old.kube_ca.cert_pem, r.leaf("kubelet", "cp-1")))
    script = probe_command().script.replace("/etc/kubernetes/pki", str(tmp_path / "none")).replace(
        "/etc/kubernetes", str(etc))
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert "PRIVATE" not in out and "-data" not in out
    read = parse("cp-1", out)
    assert read.confs == {"kubelet.conf": conf, "admin.conf": pem_conf}
    assert not read.has_ca and not read.kubelet_pem
    with pytest.raises(ValueError, match="cut short"):
        parse("cp-1", out.replace("@@end", ""))


# --- the plan ---------------------------------------------------------------------------------------


def test_the_plan_rolls_control_planes_then_workers_one_at_a_time_in_each_phase_and_records_it(cluster):
    r = start(cluster)
    plan = plan_for(cluster, r, 0)
    assert [p.name for p in plan.phases] == ["ClusterCANodesNotSetUp", *(
        name for stem in STEMS for name in (f"{stem}OnControlPlanes", f"{stem}OnWorkers", f"{stem}Copies",
                                            f"Record{stem}"))]
    assert "cp-3" in plan.phases[0].title
    by_name = {p.name: p for p in plan.phases}
    for stem in STEMS:
        cps, workers = by_name[f"{stem}OnControlPlanes"], by_name[f"{stem}OnWorkers"]
        assert cps.strategy.kind == workers.strategy.kind == "rolling"
        assert [lane.host for lane in cps.lanes] == list(CPS) and [lane.host for lane in workers.lanes] == list(WORKERS)
        for lane in cps.lanes:
            keys = [s.key for s in lane.steps]
            # every file and edit before the first restart; API server, then its two clients, then the kubelet
            restart = keys.index("restart-apiserver")
            assert all(isinstance(s, PutFileStep) or s.key in ("kubeconfig-ca-data", "link-kubelet-pem",
                                                                "record-applied-certs", "signer-to-file",
                                                                "signer-to-ca", "signer-file-gone")
                       or s.title == "Swap in each new certificate with its key" for s in lane.steps[:restart])
            order = [keys.index(k) for k in ("restart-apiserver", f"gate-api-{lane.host}",
                                             "restart-kube-controller-manager", "restart-kube-scheduler",
                                             f"restart-kubelet-{lane.host}", f"gate-node-{lane.host}")]
            assert order == sorted(order)
            assert isinstance(lane.steps[-1], GateStep) and lane.steps[-1].host == lane.host
        for lane in workers.lanes:
            assert [s.key for s in lane.steps if isinstance(s, RunStep) and s.key.startswith("restart")] == [
                f"restart-kubelet-{lane.host}"]
            # a worker's node is asked for on a control plane (the admin kubeconfig is there)
            assert lane.steps[-1].host == "cp-1" and "Ready" in lane.steps[-1].title
        copies = by_name[f"{stem}Copies"]
        assert any(isinstance(s, LocalStep) for lane in copies.lanes for s in lane.steps)
    # kube-proxy and CoreDNS restarted once, after every node trusts both CAs
    restarts = [(p.name, s.key) for p in plan.phases for lane in p.lanes for s in lane.steps
                if s.key == "in-cluster-restart"]
    assert restarts == [("TrustBothClusterCAsCopies", "in-cluster-restart")]
    ids = [s.id for p in plan.phases for lane in p.lanes for s in lane.steps]
    assert len(ids) == len(set(ids))  # the journal tells every step apart
    printed = json.dumps(plan.to_dict())
    assert "PRIVATE KEY" not in printed and "client-key-data" not in printed
    assert all(base64.b64encode(v.key_pem).decode()[:40] not in printed for v in r.leaves.values())


def test_each_phase_places_exactly_its_files_on_each_node(cluster):
    r = start(cluster)
    puts = {}
    for n, stem in enumerate(STEMS, 1):
        plan = plan_for(cluster, r, n - 1)
        for phase in ("OnControlPlanes", "OnWorkers"):
            for h in (CPS if phase == "OnControlPlanes" else WORKERS):
                puts[(n, h)] = set(lane_files(plan, stem + phase, h))
    ca = {f"{PKI}/ca.crt", f"{PKI}/ca.key"}
    signing = f"{PKI}/kubeforge-rotation-signing-ca.pem"
    confs = {f"/etc/kubernetes/{c}" for c in ("admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf")}
    leaves = {f"{PKI}/{n}.{e}" for n in ("apiserver", "apiserver-kubelet-client") for e in ("crt", "key")}
    assert puts[(1, "cp-2")] == ca | {signing} and puts[(1, "worker-1")] == {f"{PKI}/ca.crt"}
    assert puts[(2, "cp-2")] == ca | leaves | confs | {signing}
    assert puts[(2, "cp-1")] == ca | leaves | confs | {signing, "/etc/kubernetes/super-admin.conf"}
    assert puts[(2, "worker-1")] == {f"{PKI}/ca.crt", "/etc/kubernetes/kubelet.conf"}
    assert puts[(3, "cp-2")] == ca | confs  # the leaves are already the new CA's
    assert len(puts[(2, "worker-2")] - puts[(2, "worker-1")]) == 1  # its pem in the kubelet's store
    # nothing of etcd, the front-proxy CA or the service-account keys
    assert not any("etcd" in p or "front-proxy" in p or "/sa." in p for ps in puts.values() for p in ps)


def test_behind_haproxy_each_api_server_restart_is_drained_and_the_endpoint_answers(tmp_path):
    cluster = make_cluster(tmp_path, n_lb=2, endpoint_mode=EndpointMode.HAPROXY)
    ensure_pki(cluster, now=NOW)
    r = start(cluster)
    plan = plan_for(cluster, r, 1)
    lane = next(p for p in plan.phases if p.name == "ReissueClusterLeavesOnControlPlanes").lanes[0]
    titles = [s.title for s in lane.steps]
    restart = next(i for i, s in enumerate(lane.steps) if s.key == "restart-apiserver")
    assert sum(t.startswith("Drain") for t in titles[:restart]) == 2
    assert sum(t.startswith("Re-enable") for t in titles[restart:]) == 2
    assert any(t.startswith("Wait for the API at") for t in titles[restart:])


def test_phases_the_store_records_as_done_are_planned_as_done(cluster):
    r = start(cluster)
    plan = plan_for(cluster, r, 2)
    assert [p.name for p in plan.phases if not p.is_noop] == [
        "ClusterCANodesNotSetUp", "DropOldClusterCAOnControlPlanes", "DropOldClusterCAOnWorkers",
        "DropOldClusterCACopies", "RecordDropOldClusterCA"]
    done = [p for p in plan.phases if p.is_noop]
    assert [p.name for p in done] == ["TrustBothClusterCAs", "ReissueClusterLeaves"]
    assert all("store records phase" in p.reason for p in done)
    plan = plan_for(cluster, r, 3)
    assert [p.name for p in plan.phases if not p.is_noop] == ["ClusterCANodesNotSetUp", "RecordDropOldClusterCA"]
    # the same rotation planned again: the same files, so the same step ids (a resume skips what is done)
    assert [s.id for p in plan_for(cluster, start(cluster), 1).phases for lane in p.lanes for s in lane.steps] == \
           [s.id for p in plan_for(cluster, r, 1).phases for lane in p.lanes for s in lane.steps]


def test_cluster_info_and_the_local_admin_kubeconfig_follow_each_phase(cluster, tmp_path):
    r = start(cluster)
    for n in (1, 2, 3):
        cm = json.loads(cluster_info_configmap(SERVER, r.ca_for_phase(n).cert_pem))
        assert cm["metadata"] == {"name": "cluster-info", "namespace": "kube-public"}
        assert ca_data(cm["data"]["kubeconfig"].encode()) == r.ca_for_phase(n).cert_pem
        assert f"server: {SERVER}" in cm["data"]["kubeconfig"]
    conf = Kubeconfig(SERVER, "kubernetes", "kubernetes-admin", "kubernetes-admin@kubernetes")
    kubeadms = render_kubeconfig(conf, r.old.kube_ca.cert_pem, r.leaf("admin.conf", "cp-2"))
    assert update_local_admin(cluster, r.ca_for_phase(1).cert_pem, None) is False  # none fetched: none made
    local = cluster.state_dir / "admin.conf"
    local.write_bytes(kubeadms)
    assert update_local_admin(cluster, r.ca_for_phase(1).cert_pem, None) is True
    assert ca_data(local.read_bytes()) == r.ca_for_phase(1).cert_pem
    assert client_data(local.read_bytes()) == client_data(kubeadms)  # phase 1 keeps kubeadm's client
    assert update_local_admin(cluster, r.ca_for_phase(1).cert_pem, None) is False
    plan = plan_for(cluster, r, 1)
    admin = lane_files(plan, "ReissueClusterLeavesOnControlPlanes", "cp-1")["/etc/kubernetes/admin.conf"]
    step = next(s for p in plan.phases if p.name == "ReissueClusterLeavesCopies" for lane in p.lanes
                for s in lane.steps if isinstance(s, LocalStep))
    assert step.fn() is True and local.read_bytes() == admin and local.stat().st_mode & 0o777 == 0o600


# --- the command --------------------------------------------------------------------------------------


def test_the_workflow_rotates_the_nodes_set_up_and_a_dry_run_writes_nothing(tmp_path, monkeypatch):
    from kubeforge.pki.hostcerts import HostCert
    from kubeforge.workflows import certs as certs_workflow
    from kubeforge.workflows.certs_rotate import plan_rotate_ca

    cluster = make_cluster(tmp_path, topology=EtcdTopology.STACKED)
    ensure_pki(cluster, now=NOW)
    found = {h.name: [HostCert(h.name, f"{PKI}/apiserver.crt", "CN=kube-apiserver", "CN=kubernetes", NOW, SANS, "x")]
             if h.name in CPS else [] for h in cluster.hosts}
    read = kubeconfigs()
    monkeypatch.setattr(certs_workflow, "read_hosts", lambda c, pool: (found, []))
    monkeypatch.setattr("kubeforge.facts.kubeconfigs.read_kubeconfigs",
                        lambda c, pool, hosts: ({h.name: read.get(h.name, NodeKubeconfigs(h.name)) for h in hosts}, []))
    monkeypatch.setattr("kubeforge.facts.haproxy_drains.read_drained", lambda c, pool: {})
    kept = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}
    dry = plan_rotate_ca(cluster, None, ca="kubernetes", write_store=False, now=NOW)
    assert {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()} == kept  # nothing written
    assert not list(cluster.state_dir.glob(".rotate-ca-dry-run-*"))  # the scratch CA is gone
    live = plan_rotate_ca(cluster, None, ca="kubernetes", now=NOW)
    for plan in (dry, live):
        assert plan.phases[0].name == "ClusterCANodesNotSetUp" and "cp-3" in plan.phases[0].title
        assert [lane.host for lane in plan.phases[1].lanes] == list(CPS)
        assert [lane.host for lane in plan.phases[2].lanes] == list(WORKERS)
    assert ca_rotation.read_state(cluster, "kubernetes").phases_done == 0
    again = plan_rotate_ca(cluster, None, ca="kubernetes", now=NOW)
    assert [s.id for p in again.phases for lane in p.lanes for s in lane.steps] == \
           [s.id for p in live.phases for lane in p.lanes for s in lane.steps]
    # nothing set up: refused before a CA is made
    other = make_cluster(tmp_path / "other")
    ensure_pki(other, now=NOW)
    monkeypatch.setattr(certs_workflow, "read_hosts", lambda c, pool: ({h.name: [] for h in c.hosts}, []))
    with pytest.raises(CheckFailed, match="no control plane of cluster .* is set up") as exc:
        plan_rotate_ca(other, None, ca="kubernetes", now=NOW)
    assert exc.value.exit_code == 4 and not ca_rotation.rotation_dir(other, "kubernetes").exists()


def test_the_command_refuses_the_cluster_ca_while_another_rotation_is_under_way(capsys, tmp_path):
    import shutil

    from kubeforge.cli.app import run
    from kubeforge.inventory import load_cluster

    inv = tmp_path / "ha-external-etcd.yaml"
    shutil.copy(Path(__file__).parents[2] / "inventories" / "ha-external-etcd.yaml", inv)
    cluster = load_cluster(inv)
    ensure_pki(cluster, now=NOW)
    ca_rotation.start(cluster, ca="front-proxy", now=NOW)
    kept = {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()}
    code = run(["certs", "rotate-ca", "--ca", "kubernetes", "-i", str(inv), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 7, err
    assert "rotation of the front-proxy CA is in progress" in err and err.count("rotation of the") == 1
    assert {p: p.read_bytes() for p in cluster.pki_dir.rglob("*") if p.is_file()} == kept


def test_after_the_commit_up_renders_exactly_what_the_last_phase_placed(cluster):
    """The cluster CA pair of the control planes and each joined node's kubeadm join configuration (its
    discovery-token-ca-cert-hash pins the new CA): `up` afterwards has nothing to put."""
    from kubeforge.pki.secrets import ensure_secrets
    from kubeforge.render.kubeadm import JOIN_PATH
    from kubeforge.workflows.certs_rotate import join_configs
    from kubeforge.workflows.up import files_at

    ensure_secrets(cluster, now=NOW)
    r = start(cluster)
    joins = join_configs(cluster, ["cp-2", "worker-1", "worker-2"], r.new_ca)
    assert sorted(joins) == ["cp-2", "worker-1", "worker-2"]
    pin = crypto.spki_sha256(r.new_ca.cert)
    assert pin.encode() in joins["worker-1"].content and r.old.kube_ca_cert_hash.encode() not in joins["worker-1"].content
    plan = kubernetes_plan(cluster, replace_done(r, 2), kubeconfigs(), list(CPS), list(WORKERS), joins=joins)
    placed = {h: lane_files(plan, "DropOldClusterCAOn" + ("ControlPlanes" if h in CPS else "Workers"), h)
              for h in ("cp-1", "cp-2", "worker-1")}
    assert JOIN_PATH not in placed["cp-1"]  # the first control plane was initialised, never joined
    for n in (1, 2, 3):
        ca_rotation.record(cluster, n, "kubernetes")
    ca_rotation.commit(cluster, "kubernetes")
    up = {h: {f.path: f.content for f in files} for h, files in files_at(cluster, now=NOW).items()}
    for h, files in placed.items():
        for path, content in files.items():
            if path in up[h]:
                assert up[h][path] == content, (h, path)
    assert up["cp-2"][f"{PKI}/ca.crt"] == r.new_ca.cert_pem and up["worker-1"][JOIN_PATH] == placed["worker-1"][JOIN_PATH]


def test_the_controller_managers_signer_reads_one_ca_the_one_of_ca_key_and_ca_crt_again_at_the_end(cluster, tmp_path):
    """Its --cluster-signing-cert-file cannot be a bundle (kubernetes/kubeadm#1350): phases 1 and 2 point
    it at a file holding the CA whose key is ca.key (old, then new), before ca.crt holds two CAs; phase
    3 points it back at ca.crt (the new CA alone) and removes the copy. The manifest edits run with the
    real bash and sed on kubeadm's manifest lines."""
    from kubeforge.plan.certs.rotate_kubernetes import CM_MANIFEST, SIGNING_CA, point_signer

    r = start(cluster)
    for n, stem in enumerate(STEMS, 1):
        plan = plan_for(cluster, r, n - 1)
        lane = next(p for p in plan.phases if p.name == f"{stem}OnControlPlanes").lanes[0]
        placed = lane_files(plan, f"{stem}OnControlPlanes", lane.host)
        keys = [s.key for s in lane.steps]
        if n < 3:
            assert placed[SIGNING_CA].count(b"BEGIN CERTIFICATE") == 1
            assert crypto.same_public_key(crypto.load_cert(placed[SIGNING_CA]), crypto.load_key(placed[f"{PKI}/ca.key"]))
            assert crypto.load_cert(placed[SIGNING_CA]) == (r.old.kube_ca.cert if n == 1 else r.new_ca.cert)
        else:
            assert SIGNING_CA not in placed and keys.index("signer-to-ca") < keys.index("signer-file-gone")
        if n == 1:  # the signer reads the one-CA file before ca.crt becomes a bundle
            swap = next(i for i, s in enumerate(lane.steps) if s.title == "Swap in each new certificate with its key")
            assert keys.index("signer-to-file") < swap
        assert keys.index("restart-kube-controller-manager") > max(i for i, k in enumerate(keys) if k.startswith("signer")
                                                                     or k.startswith("swap-pairs"))
    manifest = tmp_path / "kube-controller-manager.yaml"
    kubeadms = ("    - --client-ca-file=/etc/kubernetes/pki/ca.crt\n"
                "    - --cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt\n"
                "    - --cluster-signing-key-file=/etc/kubernetes/pki/ca.key\n"
                "    - --root-ca-file=/etc/kubernetes/pki/ca.crt\n")
    manifest.write_text(kubeadms)

    def run(cmd) -> int:
        return subprocess.run(["bash", "-c", cmd.script.replace(CM_MANIFEST, str(manifest))],
                              capture_output=True).returncode

    to_file, on_file = point_signer(SIGNING_CA)
    assert run(on_file) != 0 and run(to_file) == 0 and run(on_file) == 0
    assert manifest.read_text() == kubeadms.replace("cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
                                                    f"cluster-signing-cert-file={SIGNING_CA}")
    back, on_ca = point_signer(f"{PKI}/ca.crt")
    assert run(on_ca) != 0 and run(back) == 0 and run(on_ca) == 0 and manifest.read_text() == kubeadms


def test_a_kubelet_conf_naming_another_file_is_refused_with_one_message_before_anything_changes(cluster):
    from dataclasses import replace as with_

    from kubeforge.errors import UsageError
    from kubeforge.workflows.certs_rotate import check_ca

    r = start(cluster)
    read = kubeconfigs()
    odd = with_(read["worker-1"].confs["kubelet.conf"], client_certificate="/root/my-kubelet.pem")
    read["worker-1"] = with_(read["worker-1"], confs={"kubelet.conf": odd})
    with pytest.raises(CheckFailed) as exc:
        kubernetes_plan(cluster, r, read, list(CPS), list(WORKERS))
    assert exc.value.exit_code == 4
    assert str(exc.value).count("\n") == 0 and "worker-1: kubelet.conf names /root/my-kubelet.pem" in str(exc.value)
    assert "nothing was touched" in str(exc.value)
    with pytest.raises(UsageError, match="--ca 'Kubernetes' is not one of etcd, kubernetes, front-proxy") as bad:
        check_ca(cluster, "Kubernetes")
    assert bad.value.exit_code == 2


def test_the_clients_keep_the_subjects_kubeadm_gave_them_on_the_host(cluster):
    """An older kubeadm's admin.conf is in system:masters: the new one stays there (a group the
    cluster binds), whatever this version's default; a subject that is not one CN and one O keeps it."""
    from kubeforge.pki.hostcerts import HostCert
    from kubeforge.workflows.certs_rotate import kubeadm_subjects

    def cert(host, path, subject):
        return HostCert(host, path, subject, "CN=kubernetes", NOW, (), "x")

    found = {"cp-1": [cert("cp-1", "/etc/kubernetes/admin.conf", "CN=kubernetes-admin,O=system:masters"),
                      cert("cp-1", f"{PKI}/apiserver-kubelet-client.crt", "CN=kube-apiserver-kubelet-client,O=a,O=b")]}
    subjects = kubeadm_subjects(found, ["cp-1", "cp-2"])
    assert subjects == {"admin.conf/cp-1": ("kubernetes-admin", "system:masters")}
    r = ca_rotation.start(cluster, ca="kubernetes", now=NOW, apiserver_sans={cp: SANS for cp in CPS},
                          kubelets=list(CPS), subjects=subjects)
    assert r.leaf("admin.conf", "cp-1").cert.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    assert r.leaf("admin.conf", "cp-2").cert.subject.rfc4514_string() == "CN=kubernetes-admin,O=kubeadm:cluster-admins"
    assert r.leaf("apiserver-kubelet-client", "cp-1").cert.subject.rfc4514_string() == \
        "CN=kube-apiserver-kubelet-client,O=kubeadm:cluster-admins"


def test_workers_go_in_batches_of_the_inventorys_max_unavailable(cluster):
    from dataclasses import replace as with_

    r = start(cluster)
    one = next(p for p in plan_for(cluster, r, 0).phases if p.name == "TrustBothClusterCAsOnWorkers")
    assert one.strategy.kind == "rolling" and "one worker at a time" in one.title
    two = with_(cluster, upgrade=with_(cluster.upgrade, max_unavailable="2"))
    phase = next(p for p in plan_for(two, r, 0).phases if p.name == "TrustBothClusterCAsOnWorkers")
    assert phase.strategy.kind == "batched" and phase.strategy.batches(list(phase.lanes)) == [list(phase.lanes)]
    assert "batches of 2" in phase.title and [lane.host for lane in phase.lanes] == list(WORKERS)
    cps = next(p for p in plan_for(two, r, 0).phases if p.name == "TrustBothClusterCAsOnControlPlanes")
    assert cps.strategy.kind == "rolling"  # control planes stay one at a time

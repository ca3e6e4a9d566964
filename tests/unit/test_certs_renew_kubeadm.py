"""`certs renew` for what kubeadm owns: which names each control plane renews (only those that expire,
or all with --all; the etcd names only with a stacked etcd, as kubeadm lists them), and the lane each
control plane goes through: kubeadm certs renew, then every static pod that reads a renewed file
restarted and gated before the next one (etcd with quorum, the API, the controller manager and the
scheduler on their /healthz)."""

from __future__ import annotations

from pathlib import Path

from kubeforge.model import EtcdTopology
from kubeforge.pki import ensure_pki
from kubeforge.pki.hostcerts import describe
from kubeforge.plan.certs.compare import KUBEADM_OWNED, compare
from kubeforge.plan.certs.renew import KUBEADM_RENEWED, renew_plan, select
from tests.factories import make_cluster
from tests.unit.test_certs_hosts import NOW, host_view, kubeadm_leaf

PKI = "/etc/kubernetes/pki"


def stacked_with(tmp_path: Path, days: dict[str, dict[str, int]]):
    """A stacked cluster whose control planes hold kubeadm's certificates, ``days`` left per host and
    file (every other kubeadm file: 300 days)."""
    c = make_cluster(tmp_path, topology=EtcdTopology.STACKED)
    bundle = ensure_pki(c, now=NOW).bundle
    found = {}
    for cp in c.control_planes:
        found[cp.name] = host_view(c, bundle, cp.name) + [
            describe(cp.name, path, kubeadm_leaf(bundle, days.get(cp.name, {}).get(path, 300))) for path in KUBEADM_OWNED]
    return c, compare(c, bundle, found, within_days=30, now=NOW)


def keys(lane) -> list[str]:
    return [s.key for s in lane.steps]


def test_every_name_kubeadm_lists_is_one_kubeforge_renews():
    assert set(KUBEADM_OWNED.values()) == set(KUBEADM_RENEWED)


def test_stacked_etcd_certificates_renew_and_restart_the_member_gated_on_quorum_before_the_api(tmp_path):
    short = {f"{PKI}/etcd/server.crt": 3, f"{PKI}/etcd/peer.crt": 3, f"{PKI}/apiserver-etcd-client.crt": 3,
             "/etc/kubernetes/controller-manager.conf": 3}
    c, report = stacked_with(tmp_path, {"cp-2": short})
    sel = select(c, report)
    assert sel.members == () and sel.not_renewed == () and sel.restarts_etcd_pods
    assert sel.kubeadm == (("cp-2", ("apiserver-etcd-client", "etcd-server", "etcd-peer", "controller-manager.conf")),)
    plan = renew_plan(c, sel, {}, {})
    lane = plan.phases[-1].lanes[0]
    assert keys(lane) == ["kubeadm-renew", "restart-etcd-pod", "gate-etcd-cp-2", "restart-apiserver", "gate-api-cp-2",
                          "restart-kube-controller-manager", "gate-kube-controller-manager-cp-2"]
    restart_etcd, quorum = lane.steps[1], lane.steps[2]
    assert "mv -f /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/etcd.yaml.kubeforge-certs" in restart_etcd.command.script
    assert quorum.what.startswith("etcd healthy on 3 members with one leader")
    assert "etcdctl" in quorum.probe.script and "endpoint health" in quorum.probe.script


def test_only_the_control_planes_with_something_expiring_are_touched_and_all_renews_every_name(tmp_path):
    c, report = stacked_with(tmp_path, {"cp-1": {"/etc/kubernetes/admin.conf": 2}, "cp-3": {f"{PKI}/apiserver.crt": 9}})
    sel = select(c, report)
    assert sel.kubeadm == (("cp-1", ("admin.conf",)), ("cp-3", ("apiserver",))) and not sel.restarts_etcd_pods
    lanes = renew_plan(c, sel, {}, {}).phases[-1].lanes
    assert [lane.host for lane in lanes] == ["cp-1", "cp-3"]
    assert keys(lanes[0]) == ["kubeadm-renew", "gate-api-cp-1"]  # a kubeconfig read afresh by each kubectl
    assert keys(lanes[1]) == ["kubeadm-renew", "restart-apiserver", "gate-api-cp-3"]
    every = select(c, report, renew_all=True, hosts=["cp-2"])
    assert [cp for cp, _ in every.kubeadm] == ["cp-2"] and set(every.kubeadm[0][1]) == set(KUBEADM_RENEWED)
    lane = renew_plan(c, every, {}, {}).phases[-1].lanes[0]
    assert keys(lane) == ["kubeadm-renew", "restart-etcd-pod", "gate-etcd-cp-2", "restart-apiserver", "gate-api-cp-2",
                          "restart-kube-controller-manager", "gate-kube-controller-manager-cp-2",
                          "restart-kube-scheduler", "gate-kube-scheduler-cp-2"]


def test_an_etcd_name_left_on_an_external_etcd_control_plane_is_named_not_renewed(tmp_path):
    c = make_cluster(tmp_path)  # external etcd: kubeadm has no etcd names to renew there
    bundle = ensure_pki(c, now=NOW).bundle
    found = {"cp-1": host_view(c, bundle, "cp-1") + [describe("cp-1", f"{PKI}/etcd/peer.crt", kubeadm_leaf(bundle, 4))]}
    sel = select(c, compare(c, bundle, found, within_days=30, now=NOW))
    assert sel.kubeadm == () and not sel.restarts_etcd_pods
    assert len(sel.not_renewed) == 1 and "only with a local, stacked etcd" in " ".join(sel.not_renewed[0].split())


def test_a_static_pod_restart_puts_a_manifest_left_aside_by_an_interrupted_run_back(tmp_path):
    from kubeforge.plan.certs.renew import component_healthy, restart_static_pod

    script = restart_static_pod("kube-scheduler", component_healthy("kube-scheduler")).script
    aside, manifest = "/etc/kubernetes/kube-scheduler.yaml.kubeforge-certs", "/etc/kubernetes/manifests/kube-scheduler.yaml"
    root = tmp_path / "host"
    (root / "etc/kubernetes/manifests").mkdir(parents=True)
    (root / aside.lstrip("/")).write_text("pod")  # where an interrupted run left it
    import subprocess

    res = subprocess.run(["bash", "-c", script.replace(" /etc/", f" {root}/etc/").replace("{ /etc/", f"{{ {root}/etc/")
                          .replace("seq 1 180", "seq 1 2")], capture_output=True, text=True)
    # nothing answers on 10259 here: the pod counts as gone at once, and the manifest is back
    assert res.returncode == 0, res.stderr
    assert (root / manifest.lstrip("/")).read_text() == "pod" and not (root / aside.lstrip("/")).exists()


def test_a_static_pod_that_does_not_answer_before_its_restart_is_left_in_place_and_the_step_fails(tmp_path):
    """Its silence after the manifest moves would prove nothing (a stacked API server reconnecting to
    its just-restarted etcd fails its probe too), so the restart waits for it to answer first."""
    import subprocess

    from kubeforge.plan.certs.renew import component_healthy, restart_static_pod

    script = restart_static_pod("kube-scheduler", component_healthy("kube-scheduler")).script
    manifest = "/etc/kubernetes/manifests/kube-scheduler.yaml"
    root = tmp_path / "host"
    (root / "etc/kubernetes/manifests").mkdir(parents=True)
    (root / manifest.lstrip("/")).write_text("pod")
    res = subprocess.run(["bash", "-c", script.replace(" /etc/", f" {root}/etc/").replace("seq 1 180", "seq 1 2")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "did not answer for 90s before its restart" in res.stderr
    assert (root / manifest.lstrip("/")).read_text() == "pod" and not list((root / "etc/kubernetes").glob("*.kubeforge-certs"))

"""Every plan that restarts an API server behind kubeforge's haproxy balancers drains it on each
balancer first and re-enables it after (kubeforge.plan.endpoint.drain): `certs renew`, `certs
rotate-ca`, the SAN re-issue of `up`, `kubeadm upgrade apply|node`. With kube-vip or an external
balancer the plans are what they were. What an interrupted run left drained is re-enabled first by
the next plan, fresh or resumed."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeforge.model import EndpointMode
from kubeforge.pki import ensure_pki, host_files
from kubeforge.plan.certs.compare import compare
from kubeforge.plan.certs.renew import APISERVER_ETCD_CLIENT, renew_plan, select
from kubeforge.plan.certs.rotate import rotation_plan
from kubeforge.plan.endpoint.drain import MARKER_DIR, admin_command, behind_balancers, ready_drained_phase
from kubeforge.plan.steps import GateStep, RunStep, done_earlier
from kubeforge.plan.upgrade.planner import plan_hop
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def haproxy_cluster(tmp_path: Path, **kw):
    return make_cluster(tmp_path, n_lb=2, endpoint_mode=EndpointMode.HAPROXY, **kw)


def lane_shape(lane) -> list[tuple[str, str]]:
    """(host, what) per step: what is the step's key without the node or hop suffix."""
    return [(s.host, s.key.split("-")[0] if s.key else s.kind) for s in lane.steps]


def renewal_of_the_api_servers_etcd_client(cluster):
    ensure_pki(cluster, now=NOW)
    bundle = ensure_pki(cluster, now=NOW, renew=frozenset({"apiserver-etcd-client"}), leaf_days=10).bundle
    found = {h.name: _host_view(cluster, bundle, h.name) for h in cluster.hosts}
    sel = select(cluster, compare(cluster, bundle, found, within_days=30, now=NOW))
    files = {cp: [f for f in host_files(cluster, bundle, cluster.host(cp)) if f.path.startswith(APISERVER_ETCD_CLIENT)]
             for cp in sel.apiservers}
    return sel, files


def _host_view(cluster, bundle, name):
    from tests.unit.test_certs_hosts import host_view
    return host_view(cluster, bundle, name)


def test_a_renewed_api_server_is_drained_on_every_balancer_restarted_gated_then_re_enabled(tmp_path):
    c = haproxy_cluster(tmp_path)
    sel, files = renewal_of_the_api_servers_etcd_client(c)
    plan = renew_plan(c, sel, {}, {}, files)
    phase = next(p for p in plan.phases if p.name == "RenewControlPlanes")
    assert phase.strategy.kind == "rolling" and [ln.host for ln in phase.lanes] == ["cp-1", "cp-2", "cp-3"]
    for lane in phase.lanes:
        cp = lane.host
        # the client pair staged and swapped in together (one step), recorded in applied.json, then the
        # drained restart
        assert lane_shape(lane) == [(cp, "put"), (cp, "put"), (cp, "swap"), (cp, "record"), ("lb-1", "drain"),
                                    ("lb-2", "drain"), (cp, "restart"), (cp, "gate"), ("lb-1", "ready"),
                                    ("lb-2", "ready"), (cp, "gate")]
        drain, ready = lane.steps[4], lane.steps[8]
        assert drain.command.description == f"haproxy: drain kube-apiserver/{cp}" and drain.command.sudo
        assert ready.command.description == f"haproxy: ready kube-apiserver/{cp}"
        assert "/run/haproxy/admin.sock" in drain.command.script
        assert ready.unless is not None and f"{MARKER_DIR}/{cp}" in ready.unless.script
        endpoint = lane.steps[-1]
        assert isinstance(endpoint, GateStep) and f"--server https://{c.endpoint.host_port}" in endpoint.probe.script
    # one drain/re-enable per (balancer, control plane): the journal tells them apart
    ids = [s.id for ln in phase.lanes for s in ln.steps]
    assert len(ids) == len(set(ids))
    assert plan.phases[0].name != "ReadyDrainedApiServers", "nothing drained: no re-enable phase shown"


@pytest.mark.parametrize("mode", [EndpointMode.KUBE_VIP, EndpointMode.EXTERNAL])
def test_without_kubeforges_haproxy_the_restart_steps_are_unchanged(tmp_path, mode):
    c = make_cluster(tmp_path, endpoint_mode=mode)
    sel, files = renewal_of_the_api_servers_etcd_client(c)
    phase = next(p for p in renew_plan(c, sel, {}, {}, files).phases if p.name == "RenewControlPlanes")
    for lane in phase.lanes:
        # puts, swap, record, restart, gate
        assert [s.kind for s in lane.steps] == ["put", "put", "run", "run", "run", "gate"]
        assert all(s.host == lane.host for s in lane.steps)


def test_renewing_only_kubeconfigs_restarts_nothing_and_drains_nothing(tmp_path):
    from kubeforge.plan.certs.renew import apiserver_lane

    c = haproxy_cluster(tmp_path)
    steps = apiserver_lane(c, "cp-1", (), 60, ("admin.conf",))
    assert [s.key for s in steps] == ["kubeadm-renew", "gate-api-cp-1"]


def test_a_resumed_run_interrupted_between_drain_and_re_enable_re_enables(tmp_path):
    """Ctrl-C after the drains and the restart: the journal has them done; the resumed lane still has
    its re-enable steps and the endpoint gate to run."""
    c = haproxy_cluster(tmp_path)
    sel, files = renewal_of_the_api_servers_etcd_client(c)
    lane = next(p for p in renew_plan(c, sel, {}, {}, files).phases if p.name == "RenewControlPlanes").lanes[0]
    journal = frozenset(s.id for s in lane.steps[:7])  # puts, swap, record, drains, restart
    again = next(p for p in renew_plan(c, sel, {}, {}, files).phases if p.name == "RenewControlPlanes").lanes[0]
    left = [s for s in again.steps if not done_earlier(s, journal)]
    assert [(s.host, s.key) for s in left] == [("cp-1", "gate-api-cp-1"), ("lb-1", "ready-cp-1"), ("lb-2", "ready-cp-1"),
                                               ("cp-1", "gate-endpoint-cp-1")]


def test_a_plan_after_an_interrupted_run_re_enables_what_its_markers_name_first(tmp_path):
    """A fresh run (or a resume whose plan no longer restarts that node): the markers read before
    planning put a re-enable phase first, on the balancers that have them."""
    c = haproxy_cluster(tmp_path)
    sel, files = renewal_of_the_api_servers_etcd_client(c)
    plan = renew_plan(c, sel, {}, {}, files, drained={"lb-2": ("cp-2",)})
    first = plan.phases[0]
    assert first.name == "ReadyDrainedApiServers" and [ln.host for ln in first.lanes] == ["lb-2"]
    (step,) = first.lanes[0].steps
    assert isinstance(step, RunStep) and step.command.description == "haproxy: ready kube-apiserver/*"
    assert "cp-2" in step.title and step.unless is not None
    assert ready_drained_phase(c, {}).reason == "no API server was left drained on a haproxy balancer"
    kube_vip = make_cluster(tmp_path, endpoint_mode=EndpointMode.KUBE_VIP)
    assert ready_drained_phase(kube_vip, {"lb-1": ("cp-1",)}).is_noop


def test_a_ca_rotation_drains_each_api_server_around_each_of_its_three_restarts(tmp_path):
    from kubeforge.model import RenderedFile

    c = haproxy_cluster(tmp_path)
    cps = [cp.name for cp in c.control_planes]
    ca = {n: RenderedFile("/etc/kubernetes/pki/etcd/ca.crt", f"phase {n}".encode()) for n in (1, 2, 3)}
    plan = rotation_plan(c, phases_done=0, members=[], apiservers=cps, member_files={n: {} for n in (1, 2, 3)},
                         apiserver_files={n: {cp: (ca[n],) for cp in cps} for n in (1, 2, 3)}, config_files={},
                         record=lambda n: (lambda: True), drained={"lb-1": ("cp-3",)})
    assert plan.phases[0].name == "ReadyDrainedApiServers"
    on_apiservers = [p for p in plan.phases if p.name.endswith("OnApiServers")]
    assert len(on_apiservers) == 3
    for p in on_apiservers:
        for lane in p.lanes:
            keys = [s.key for s in lane.steps]
            assert keys.index(f"drain-{lane.host}") < keys.index("restart-apiserver") < keys.index(f"ready-{lane.host}")
            assert lane.steps[-1].key == f"gate-endpoint-{lane.host}"


def test_the_san_reissue_of_up_drains_each_api_server_it_restarts(tmp_path):
    from kubeforge.model import RenderedFile
    from kubeforge.plan.certs.sans import reissue_lane

    c = haproxy_cluster(tmp_path)
    steps = reissue_lane(c, c.host("cp-2"), RenderedFile("/etc/kubernetes/kubeadm-certs.yaml", b"x"), ("api.test",), 60,
                         upload=False)
    assert [(s.host, s.key.split("-")[0]) for s in steps[1:]] == [
        ("cp-2", "reissue"), ("lb-1", "drain"), ("lb-2", "drain"), ("cp-2", "restart"), ("cp-2", "gate"),
        ("lb-1", "ready"), ("lb-2", "ready"), ("cp-2", "gate")]


def test_kubeadm_upgrade_apply_and_node_are_drained_around_and_the_first_hop_re_enables_what_was_left(tmp_path):
    from kubeforge.facts.cluster import Node
    from kubeforge.plan.upgrade.state import NodeMachine, UpgradeFacts
    from tests.unit.test_upgrade_planner import ALL, V133, V134, noop_backup

    c = make_cluster(tmp_path, version="1.33.5", n_cp=2, n_workers=1, n_lb=2, endpoint_mode=EndpointMode.HAPROXY)
    machines = {h.name: NodeMachine(h.name, {k: V133 for k in ALL}, ALL, V133 if h.is_control_plane else None)
                for h in c.nodes}
    nodes = {h.name: Node(h.name, True, unschedulable=False, kubelet=V133) for h in c.nodes}
    facts = UpgradeFacts(machines, nodes, drained_backends={"lb-1": ("cp-1",)})
    plan = plan_hop(c, facts, V134, backup=noop_backup)
    assert plan.phases[0].name == "ReadyDrainedApiServers"
    for name, kubeadm in (("UpgradeFirstControlPlane", "kubeadm-upgrade-apply"), ("UpgradeControlPlanes", "kubeadm-upgrade-node")):
        (lane,) = next(p for p in plan.phases if p.name == name).lanes
        keys = [s.key for s in lane.steps]
        cp = lane.host
        at = next(i for i, k in enumerate(keys) if k.endswith(kubeadm))
        assert keys[at - 2:at] == [f"drain-{cp}-v{V134}"] * 2
        assert [s.host for s in lane.steps[at - 2:at]] == ["lb-1", "lb-2"]
        after = keys[at + 1:at + 5]
        assert after[0].endswith(f"api-ready-{cp}") and after[1:3] == [f"ready-{cp}-v{V134}"] * 2
        assert after[3] == f"gate-endpoint-{cp}-v{V134}"
        # the node's own kubectl drain (its kubelet's window) comes after its API server is back
        assert keys.index(next(k for k in keys if k.endswith(f"drain-{cp}") and k.startswith("v"))) > at + 4


def test_every_drain_script_is_valid_bash():
    for action, server in (("drain", "cp-1"), ("ready", "cp-1"), ("ready", "*")):
        script = admin_command(action, server, 10).script
        assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0, script
    assert behind_balancers(make_cluster(None, endpoint_mode=EndpointMode.KUBE_VIP), make_cluster(None).host("cp-1"),
                            ["x"], 60) == ["x"]

"""`up` re-issues exactly the certificates a SAN change touches: the API server certificate of each
running control plane that does not cover the inventory's names (rolled one control plane at a time,
each gated on its API), and an etcd member's leaves when its address changes (handed to the etcd
workflow's rolling restart). A converged cluster whose certificates cover every name plans nothing."""

from __future__ import annotations

import dataclasses

import yaml

from kubeforge.plan.certs.sans import APISERVER_CRT, apiserver_names, missing_names
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from kubeforge.plan.up import UpContext, plan_up
from kubeforge.render.kubeadm import APISERVER_CERTS_PATH
from tests.unit.test_up_planner import CNI, cluster, converged_facts, ready_state, resolve, resolved  # noqa: F401 (fixtures)


def running(cluster, files, new=None, new_files=None, sans=None) -> UpContext:
    """The hosts converged on ``cluster`` (its files applied, each API server certificate covering its
    names); planned against ``new`` (the edited inventory) and its files."""
    facts = {h.name: converged_facts(cluster, files, h) for h in cluster.hosts}
    have = sans if sans is not None else {h.name: apiserver_names(cluster, h) for h in cluster.control_planes}
    return UpContext(new or cluster, facts, new_files or files, ready_state(cluster), cni=CNI,
                     local_admin_sha256="ab" * 32, apiserver_sans=have)


def reissue(plan):
    return next(p for p in plan.phases if p.name == "ReissueApiserverCerts")


def with_endpoint(cluster, **changes):
    return dataclasses.replace(cluster, endpoint=dataclasses.replace(cluster.endpoint, **changes))


def test_a_converged_cluster_whose_certificates_cover_every_name_plans_no_certificate_step(cluster, resolved):
    plan = plan_up(running(cluster, resolved[1]))
    assert plan.is_noop, plan.render_text()
    assert "every running API server's certificate covers the inventory's names" in reissue(plan).reason


def test_a_new_extra_san_reissues_every_running_api_server_certificate_one_control_plane_at_a_time(cluster, resolved):
    new = with_endpoint(cluster, extra_sans=(*cluster.endpoint.extra_sans, "api.example.test"))
    _, files = resolve(new)
    plan = plan_up(running(cluster, resolved[1], new, files))
    phase = reissue(plan)
    assert phase.strategy.kind == "rolling"
    assert [ln.host for ln in phase.lanes] == [h.name for h in cluster.control_planes]
    first, second = phase.lanes
    assert [type(s) for s in first.steps] == [PutFileStep, RunStep, RunStep, RunStep, GateStep]
    assert [s.key for s in first.steps[1:4]] == ["upload-kubeadm-config", "reissue-apiserver-cert", "restart-apiserver"]
    # the cluster's configuration is uploaded once, before the first re-issue
    assert [s.key for s in second.steps if isinstance(s, RunStep)] == ["reissue-apiserver-cert", "restart-apiserver"]
    put = first.steps[0]
    assert put.file.path == APISERVER_CERTS_PATH and not put.file.secret
    docs = list(yaml.safe_load_all(put.file.content))
    init = next(d for d in docs if d["kind"] == "InitConfiguration")
    cc = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    assert "api.example.test" in cc["apiServer"]["certSANs"]
    assert init["localAPIEndpoint"]["advertiseAddress"] == cluster.control_planes[0].internal_address
    assert "bootstrapTokens" not in init and "certificateKey" not in init
    step = first.steps[2]
    assert "api.example.test" in step.title
    assert "kubeadm init phase certs apiserver --config " + APISERVER_CERTS_PATH in step.command.script
    assert f"mv -f {APISERVER_CRT}" in step.command.script  # kubeadm keeps a pair it finds: moved aside first
    assert "-checkhost api.example.test" in step.unless.script  # a resumed run does not issue it twice
    gate = first.steps[-1]
    assert gate.host == "cp-1" and f"--server https://{cluster.control_planes[0].internal_address}:6443" in gate.probe.script
    # nothing else in the plan changes: the init file that carries the certSANs, and the record of it
    others = [s for p in plan.phases if not p.is_noop and p.name != "ReissueApiserverCerts" for s in p.steps]
    assert {s.file.path for s in others if isinstance(s, PutFileStep)} == {"/etc/kubeforge/kubeadm-init.yaml",
                                                                           "/etc/kubeforge/applied.json"}
    assert all(isinstance(s, PutFileStep) for s in others), plan.render_text()


def test_a_control_planes_changed_address_reissues_only_its_own_certificate(cluster, resolved):
    cp2 = cluster.host("cp-2")
    moved = dataclasses.replace(cp2, address="10.77.9.2")  # its address (kept beside the internal one)
    new = dataclasses.replace(cluster, hosts=tuple(moved if h.name == "cp-2" else h for h in cluster.hosts))
    assert missing_names(new, moved, apiserver_names(cluster, cp2)) == ("10.77.9.2",)
    _, files = resolve(new)
    phase = reissue(plan_up(running(cluster, resolved[1], new, files)))
    assert [ln.host for ln in phase.lanes] == ["cp-2"]
    assert "10.77.9.2" in next(s for s in phase.lanes[0].steps if s.key == "reissue-apiserver-cert").title


def test_a_new_endpoint_address_reissues_every_running_control_plane(cluster, resolved):
    new = with_endpoint(cluster, host="10.77.4.200")
    _, files = resolve(new)
    phase = reissue(plan_up(running(cluster, resolved[1], new, files)))
    assert [ln.host for ln in phase.lanes] == ["cp-1", "cp-2"]
    steps = [next(s for s in ln.steps if s.key == "reissue-apiserver-cert") for ln in phase.lanes]
    assert all("-checkip 10.77.4.200" in s.unless.script for s in steps)


def test_a_control_plane_not_yet_running_gets_its_certificate_from_its_join_not_a_reissue(cluster, resolved):
    new = with_endpoint(cluster, extra_sans=("api.example.test",))
    _, files = resolve(new)
    only_first = {"cp-1": apiserver_names(cluster, cluster.host("cp-1"))}
    phase = reissue(plan_up(running(cluster, resolved[1], new, files, sans=only_first)))
    assert [ln.host for ln in phase.lanes] == ["cp-1"]


def test_an_etcd_members_new_address_changes_only_its_leaves_and_hands_it_to_a_rolling_restart(cluster, resolved):
    e2 = cluster.host("etcd-2")
    new = dataclasses.replace(cluster, hosts=tuple(dataclasses.replace(h, address="10.77.9.12") if h.name == "etcd-2"
                                                   else h for h in cluster.hosts))
    _, files = resolve(new)  # the store re-issues etcd-2's server and peer certificates (SANs no longer cover)
    plan = plan_up(running(cluster, resolved[1], new, files))
    write = next(p for p in plan.phases if p.name == "WritePki")
    assert {ln.host for ln in write.lanes} == {"etcd-2"}
    assert {s.file.path for s in write.steps} == {"/etc/etcd/pki/server.crt", "/etc/etcd/pki/server.key",
                                                  "/etc/etcd/pki/peer.crt", "/etc/etcd/pki/peer.key"}
    # the thin InstallEtcd is not a no-op for etcd-2 alone: `up` then hands the cluster to the etcd
    # workflow, which restarts changed members one at a time with a health gate (workflows.up.with_etcd_install)
    install = next(p for p in plan.phases if p.name == "InstallEtcd")
    assert [ln.host for ln in install.lanes] == ["etcd-2"]
    assert reissue(plan).is_noop and e2.internal_address == "10.77.4.12"

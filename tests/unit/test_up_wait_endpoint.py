"""Joins wait for the API at the endpoint itself (through haproxy/keepalived, kube-vip or an external
balancer) when the cluster is new or its balancer changes in this run; otherwise the phase says why not."""

from __future__ import annotations

import dataclasses

import pytest

from kubeforge.model import CniSpec, EndpointMode, Network, Role
from kubeforge.plan.steps import GateStep
from kubeforge.plan.up import ClusterState, UpContext, plan_up
from tests.factories import make_cluster, make_host
from tests.unit.test_up_planner import (
    CNI,
    VERSION,
    converged_ctx,
    fresh_facts,
    phase,
    resolve,
)


def haproxy_cluster(tmp_path, **kw):
    c = make_cluster(tmp_path, version=VERSION, etcd_version="3.4.23", n_etcd=1, n_cp=2, n_workers=1, n_lb=2,
                     endpoint_mode=EndpointMode.HAPROXY, **kw)
    return dataclasses.replace(c, network=Network(cni=CniSpec(manifest="cni.yaml", name="kubesim-cni")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    return haproxy_cluster(tmp_path_factory.mktemp("wait-endpoint"))


@pytest.fixture(scope="module")
def files(cluster):
    return resolve(cluster)[1]


def with_new_worker(cluster, converged_files, new_cluster=None):
    """The converged cluster (files of ``cluster``) asked to take one more worker, as ``new_cluster``."""
    bigger = new_cluster or cluster
    bigger = dataclasses.replace(bigger, hosts=bigger.hosts + (make_host("worker-9", "10.77.4.90", Role.WORKER),))
    ctx = converged_ctx(cluster, converged_files)
    facts = dict(ctx.facts, **{"worker-9": fresh_facts("worker-9")})
    return dataclasses.replace(ctx, cluster=bigger, facts=facts, files=resolve(bigger)[1])


def test_a_new_haproxy_cluster_waits_for_the_api_through_the_vip_before_any_join(cluster, files):
    ctx = UpContext(cluster, {h.name: fresh_facts(h.name) for h in cluster.hosts}, files, ClusterState(), cni=CNI)
    plan = plan_up(ctx)
    names = [p.name for p in plan.phases]
    assert names.index("InitFirstControlPlane") < names.index("WaitEndpoint") < names.index("JoinControlPlanes")
    (gate,) = phase(plan, "WaitEndpoint").steps
    assert isinstance(gate, GateStep) and gate.host == "cp-1"
    # --server: kubectl must not answer from the local API server when the VIP does not
    assert "--server https://10.77.4.100:6443 get --raw /readyz" in gate.probe.script
    assert "10.77.4.100:6443" in gate.what and "haproxy" in gate.what


def test_a_worker_joining_a_running_cluster_with_unchanged_balancers_needs_no_endpoint_wait(cluster, files):
    plan = plan_up(with_new_worker(cluster, files))
    wait = phase(plan, "WaitEndpoint")
    assert wait.is_noop and "unchanged" in wait.reason
    assert [lane.host for lane in phase(plan, "JoinWorkers").lanes] == ["worker-9"]


def test_a_join_in_the_run_that_rewrites_the_balancers_waits_for_the_endpoint(cluster, files):
    # a new VRRP id rewrites keepalived.conf: keepalived restarts and the VIP may be away a moment
    changed = dataclasses.replace(cluster, endpoint=dataclasses.replace(cluster.endpoint, virtual_router_id=77))
    plan = plan_up(with_new_worker(cluster, files, changed))
    assert [lane.host for lane in phase(plan, "ConfigureEndpoint").lanes] == ["lb-1", "lb-2"]
    (gate,) = phase(plan, "WaitEndpoint").steps
    assert isinstance(gate, GateStep) and "https://10.77.4.100:6443" in gate.probe.script


def test_a_converged_cluster_waits_for_nothing(cluster, files):
    wait = phase(plan_up(converged_ctx(cluster, files)), "WaitEndpoint")
    assert wait.is_noop and "no node is waiting" in wait.reason


def test_a_single_control_plane_is_its_own_endpoint_and_needs_no_second_wait(tmp_path):
    c = make_cluster(tmp_path, version=VERSION, etcd_version="3.4.23", n_etcd=1, n_cp=1, n_workers=1)
    assert c.endpoint.mode is EndpointMode.NONE
    _, files = resolve(c)
    ctx = UpContext(c, {h.name: fresh_facts(h.name) for h in c.hosts}, files, ClusterState(), cni=CNI)
    wait = phase(plan_up(ctx), "WaitEndpoint")
    assert wait.is_noop and "cp-1 itself" in wait.reason

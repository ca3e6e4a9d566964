"""ConfigureEndpoint for haproxy mode: both balancers get haproxy.cfg, keepalived.conf and the check
script and start the units; a running balancer whose configuration changes is reloaded, not restarted
(the balancers change in parallel: two haproxy restarts at once would cut the API off at the VIP)."""

from __future__ import annotations

import dataclasses

import pytest

from kubeforge.facts.types import Units, UnitState
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.plan.up import ClusterState, UpContext, plan_up
from tests.unit.test_up_planner import CNI, converged_ctx, fresh_facts, phase, resolve
from tests.unit.test_up_wait_endpoint import haproxy_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    return haproxy_cluster(tmp_path_factory.mktemp("configure-endpoint"))


@pytest.fixture(scope="module")
def files(cluster):
    return resolve(cluster)[1]


def balancers_running(ctx: UpContext) -> UpContext:
    """converged_ctx with haproxy and keepalived active on the balancers, as after an up."""
    running = Units({u: UnitState("active", "enabled", True) for u in ("haproxy", "keepalived")})
    facts = {name: dataclasses.replace(f, units=running) if name.startswith("lb-") else f for name, f in ctx.facts.items()}
    return dataclasses.replace(ctx, facts=facts)


def lane_steps(plan, host):
    return next(lane for lane in phase(plan, "ConfigureEndpoint").lanes if lane.host == host).steps


def test_fresh_balancers_get_their_four_files_and_both_units_started(cluster, files):
    ctx = UpContext(cluster, {h.name: fresh_facts(h.name) for h in cluster.hosts}, files, ClusterState(), cni=CNI)
    plan = plan_up(ctx)
    assert [lane.host for lane in phase(plan, "ConfigureEndpoint").lanes] == ["lb-1", "lb-2"]
    for lb in ("lb-1", "lb-2"):
        steps = lane_steps(plan, lb)
        assert [s.file.path for s in steps if isinstance(s, PutFileStep)] == [
            "/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf",
            "/etc/systemd/system/keepalived.service.d/10-kubeforge-address.conf", "/etc/keepalived/check-haproxy.sh"]
        runs = [s for s in steps if isinstance(s, RunStep)]
        assert [s.key for s in runs] == ["restart-haproxy", "restart-keepalived"]
        # started when inactive, reloaded when running: never a plain restart of a running balancer
        assert all("systemctl reload-or-restart" in s.command.script for s in runs)
        assert not any("systemctl restart " in s.command.script for s in runs)
        assert all("systemctl enable" in s.command.script for s in runs)


def test_a_changed_keepalived_config_on_running_balancers_is_written_and_reloaded(cluster, files):
    changed = dataclasses.replace(cluster, endpoint=dataclasses.replace(cluster.endpoint, virtual_router_id=77))
    ctx = dataclasses.replace(balancers_running(converged_ctx(cluster, files)), cluster=changed, files=resolve(changed)[1])
    plan = plan_up(ctx)
    steps = lane_steps(plan, "lb-1")
    assert [s.file.path for s in steps if isinstance(s, PutFileStep)] == ["/etc/keepalived/keepalived.conf"]
    keepalived = next(s for s in steps if isinstance(s, RunStep) and s.key == "restart-keepalived")
    assert "systemctl reload-or-restart keepalived" in keepalived.command.script


def test_converged_balancers_are_left_alone(cluster, files):
    configure = phase(plan_up(balancers_running(converged_ctx(cluster, files))), "ConfigureEndpoint")
    assert configure.is_noop and "haproxy and keepalived run" in configure.reason


def test_a_balancer_whose_haproxy_stopped_gets_it_started_without_rewriting_files(cluster, files):
    ctx = balancers_running(converged_ctx(cluster, files))
    stopped = Units({"haproxy": UnitState("failed", "enabled", True), "keepalived": UnitState("active", "enabled", True)})
    ctx = dataclasses.replace(ctx, facts=dict(ctx.facts, **{"lb-2": dataclasses.replace(ctx.facts["lb-2"], units=stopped)}))
    plan = plan_up(ctx)
    assert [lane.host for lane in phase(plan, "ConfigureEndpoint").lanes] == ["lb-2"]
    assert [s.key for s in lane_steps(plan, "lb-2")] == ["restart-haproxy"]

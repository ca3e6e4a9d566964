"""Every preflight check on recorded facts: a good fleet passes, each broken fact fails or warns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kubeforge.facts import parse_host_facts
from kubeforge.facts.parse_network import parse_ports
from kubeforge.facts.parse_software import parse_applied, parse_units
from kubeforge.facts.parse_system import parse_modules, parse_os_release, parse_swaps, parse_sysctls
from kubeforge.facts.preflight import Connection, ConnectResults, FsyncResult, Listening, ProbeResults, Status
from kubeforge.facts.types import ClockSample, FactsError, Macs, Memory
from kubeforge.model import EtcdTopology
from kubeforge.workflows.preflight import run_preflight
from tests.factories import make_cluster

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"
NOW = 1_795_331_932.0
GIB = 1024**3


def fx(fact: str, name: str) -> str:
    return (FIXTURES / fact / f"{name}.txt").read_text()


RUNNER = parse_host_facts("runner", fx("script", "debian12-runner"))


def good(i: int, name: str, **changes):
    """Recorded runner facts made into a healthy, distinct host number ``i``."""
    base = dataclasses.replace(
        RUNNER,
        host=name,
        hostname=name,
        product_uuid=f"00000000-0000-0000-0000-{i:012d}",
        macs=Macs({"host0": f"02:00:00:00:00:{i:02x}"}),
        sysctls=parse_sysctls(fx("sysctls", "set")),
        cpus=4,
        memory=Memory(total_bytes=16 * GIB, available_bytes=15 * GIB),
        time=ClockSample(remote=NOW + 0.01, local_before=NOW, local_after=NOW + 0.02),
        problems={},
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def cluster():
    return make_cluster(n_etcd=3, n_cp=1, n_workers=1)


@pytest.fixture
def fleet(cluster):
    return {h.name: good(i + 1, h.name) for i, h in enumerate(cluster.hosts)}


def result(report, host, check):
    r = report.get(host, check)
    assert r is not None, f"no {check} result for {host}: {report.for_host(host)}"
    return r


def test_a_healthy_fleet_has_no_failure(cluster, fleet):
    report = run_preflight(cluster, fleet, now=NOW)
    assert not report.failed, report.render_text()
    assert report.hosts == tuple(h.name for h in cluster.hosts)


def test_swap_on_fails_and_names_the_swap_device(cluster, fleet):
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], swap=parse_swaps(fx("swap", "on")))
    report = run_preflight(cluster, fleet, now=NOW)
    r = result(report, "worker-1", "swap")
    assert r.status is Status.FAIL and "/swapfile" in r.message
    assert report.failed


def test_swap_back_on_a_node_kubeforge_prepared_says_it_was_turned_on_again_and_that_its_kubelet_cannot_start(cluster, fleet):
    applied = parse_applied(json.dumps({"cluster": cluster.name, "roles": ["worker"]}))
    member = dataclasses.replace(fleet["worker-1"].membership, kubelet_conf=True)
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], swap=parse_swaps(fx("swap", "on")), applied=applied,
                                            membership=member)
    r = result(run_preflight(cluster, fleet, now=NOW), "worker-1", "swap")
    assert r.status is Status.FAIL and "/swapfile" in r.message
    assert "kubeforge turned it off when it prepared this host" in r.message
    assert "this node's kubelet cannot start until it is off" in r.message


def test_swap_is_not_judged_on_a_dedicated_etcd_host(cluster, fleet):
    fleet["etcd-1"] = dataclasses.replace(fleet["etcd-1"], swap=parse_swaps(fx("swap", "on")))
    assert run_preflight(cluster, fleet, now=NOW).get("etcd-1", "swap") is None


def test_unknown_swap_state_is_a_warning_not_a_pass(cluster, fleet):
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], swap=parse_swaps(fx("swap", "garbage")))
    assert result(run_preflight(cluster, fleet, now=NOW), "cp-1", "swap").status is Status.WARN


def test_br_netfilter_absent_fails_and_loadable_only_warns(cluster, fleet):
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], modules=parse_modules("", fx("modules_wanted", "missing")))
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], modules=parse_modules("", fx("modules_wanted", "loadable")))
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "cp-1", "modules").status is Status.FAIL
    assert "br_netfilter" in result(report, "cp-1", "modules").message
    assert result(report, "worker-1", "modules").status is Status.WARN


def test_unset_sysctls_warn_before_kubeforge_prepared_the_host(cluster, fleet):
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], sysctls=parse_sysctls(fx("sysctls", "missing")))
    r = result(run_preflight(cluster, fleet, now=NOW), "cp-1", "sysctls")
    assert r.status is Status.WARN and "net.ipv4.ip_forward is 0" in r.message


def test_unset_sysctls_fail_on_a_host_kubeforge_already_prepared(cluster, fleet):
    applied = parse_applied(json.dumps({"cluster": cluster.name, "roles": ["control-plane"]}))
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], sysctls=parse_sysctls(fx("sysctls", "missing")), applied=applied)
    r = result(run_preflight(cluster, fleet, now=NOW), "cp-1", "sysctls")
    assert r.status is Status.FAIL and "changed it since" in r.message


def test_a_port_taken_by_a_foreign_process_fails_naming_port_and_process(cluster, fleet):
    ports = parse_ports('#ss\nLISTEN 0 5 0.0.0.0:6443 0.0.0.0:* users:(("python3",pid=4242,fd=3))\n')
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], ports=ports)
    r = result(run_preflight(cluster, fleet, now=NOW), "cp-1", "ports")
    assert r.status is Status.FAIL
    assert "6443 (kube-apiserver) is in use by python3" in r.message


def test_etcd_ports_held_by_our_own_etcd_pass_as_already_ours(cluster, fleet):
    ports = parse_ports(
        '#ss\nLISTEN 0 4096 10.77.4.11:2379 0.0.0.0:* users:(("etcd",pid=7,fd=8))\n'
        'LISTEN 0 4096 10.77.4.11:2380 0.0.0.0:* users:(("etcd",pid=7,fd=7))\n'
    )
    applied = parse_applied(json.dumps({"cluster": cluster.name, "roles": ["etcd"]}))
    fleet["etcd-1"] = dataclasses.replace(fleet["etcd-1"], ports=ports, applied=applied, units=parse_units(fx("units", "installed")))
    r = result(run_preflight(cluster, fleet, now=NOW), "etcd-1", "ports")
    assert r.status is Status.PASS and "already ours" in r.message and "2379" in r.message


def test_etcd_ports_held_by_an_etcd_kubeforge_did_not_install_fail(cluster, fleet):
    ports = parse_ports('#ss\nLISTEN 0 4096 0.0.0.0:2379 0.0.0.0:* users:(("etcd",pid=7,fd=8))\n')
    fleet["etcd-2"] = dataclasses.replace(fleet["etcd-2"], ports=ports)
    assert result(run_preflight(cluster, fleet, now=NOW), "etcd-2", "ports").status is Status.FAIL


def test_a_port_without_process_name_is_ours_only_when_our_unit_is_active(cluster, fleet):
    ports = parse_ports("#ss\nLISTEN 0 4096 *:10250 *:*\n")
    applied = parse_applied(json.dumps({"cluster": cluster.name}))
    active = dataclasses.replace(fleet["worker-1"], ports=ports, applied=applied, units=parse_units(fx("units", "installed")))
    inactive = dataclasses.replace(fleet["worker-1"], ports=ports, applied=applied, units=parse_units(fx("units", "missing")))
    assert result(run_preflight(cluster, {**fleet, "worker-1": active}, now=NOW), "worker-1", "ports").status is Status.PASS
    assert result(run_preflight(cluster, {**fleet, "worker-1": inactive}, now=NOW), "worker-1", "ports").status is Status.FAIL


def test_control_plane_below_two_cpus_or_two_gib_fails(cluster, fleet):
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], cpus=1, memory=Memory(total_bytes=1 * GIB))
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "cp-1", "cpu").status is Status.FAIL
    assert "needs at least 2" in result(report, "cp-1", "cpu").message
    assert result(report, "cp-1", "memory").status is Status.FAIL


def test_control_plane_below_the_recommendation_warns(cluster, fleet):
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], cpus=2, memory=Memory(total_bytes=4 * GIB))
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "cp-1", "cpu").status is Status.WARN
    assert "16.0 GiB recommended" in result(report, "cp-1", "memory").message


def test_memory_minimums_allow_for_what_the_kernel_reserves(cluster, fleet):
    # a "2 GB" machine reports about 1.9 GiB of MemTotal
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], memory=Memory(total_bytes=int(1.9 * GIB)))
    assert result(run_preflight(cluster, fleet, now=NOW), "cp-1", "memory").status is Status.WARN


def test_a_worker_with_one_cpu_and_one_gib_passes(cluster, fleet):
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], cpus=1, memory=Memory(total_bytes=1 * GIB))
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "worker-1", "cpu").status is Status.PASS
    assert result(report, "worker-1", "memory").status is Status.PASS


def test_etcd_disk_smaller_than_recommended_warns_and_below_quota_fails(cluster, fleet):
    from kubeforge.facts.parse_system import parse_disks

    small = parse_disks("/\t/\t/dev/sda1 10000000 1 9000000 1% /\n/var/lib\t/var/lib\t/dev/sda1 10000000 1 9000000 1% /\n/var/lib/etcd\t/var/lib\t/dev/sda1 10000000 1 9000000 1% /\n")
    full = parse_disks("/\t/\t/dev/sda1 10000000 1 1000000 99% /\n/var/lib\t/var/lib\t/dev/sda1 10000000 1 1000000 99% /\n/var/lib/etcd\t/var/lib\t/dev/sda1 10000000 1 1000000 99% /\n")
    fleet["etcd-1"] = dataclasses.replace(fleet["etcd-1"], disks=small)
    fleet["etcd-2"] = dataclasses.replace(fleet["etcd-2"], disks=full)
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "etcd-1", "disk").status is Status.WARN
    assert "20 GB recommended" in result(report, "etcd-1", "disk").message
    assert result(report, "etcd-2", "disk").status is Status.FAIL
    assert "etcd quota" in result(report, "etcd-2", "disk").message


def test_duplicate_product_uuid_fails_on_both_hosts_naming_the_other(cluster, fleet):
    same = "4c4c4544-0042-3510-8048-b4c04f4d3732"
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], product_uuid=same)
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], product_uuid=same)
    report = run_preflight(cluster, fleet, now=NOW)
    a, b = result(report, "cp-1", "product-uuid"), result(report, "worker-1", "product-uuid")
    assert a.status is Status.FAIL and "worker-1" in a.message
    assert b.status is Status.FAIL and "cp-1" in b.message
    assert result(report, "etcd-1", "product-uuid").status is Status.PASS


def test_duplicate_mac_and_hostname_fail_naming_both_hosts(cluster, fleet):
    fleet["etcd-2"] = dataclasses.replace(fleet["etcd-2"], macs=fleet["etcd-1"].macs, hostname="etcd-1")
    report = run_preflight(cluster, fleet, now=NOW)
    assert "etcd-2 (host0)" in result(report, "etcd-1", "mac").message
    assert result(report, "etcd-2", "hostname").status is Status.FAIL
    assert "etcd-1" in result(report, "etcd-2", "hostname").message


def test_clock_skew_above_the_limit_fails_and_says_ahead_or_behind(cluster, fleet):
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], time=ClockSample(NOW + 5.0, NOW, NOW + 0.02))
    report = run_preflight(cluster, fleet, now=NOW)
    r = result(report, "worker-1", "clock-skew")
    assert r.status is Status.FAIL and "ahead of" in r.message and "limit 2 s" in r.message
    assert result(report, "cp-1", "clock-skew").status is Status.FAIL  # cp-1 is behind worker-1


def test_latency_does_not_pass_for_clock_skew(cluster, fleet):
    # a 4 s round trip to one host: its sample could be from any moment within it
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], time=ClockSample(NOW + 3.0, NOW, NOW + 4.0))
    assert result(run_preflight(cluster, fleet, now=NOW), "worker-1", "clock-skew").status is Status.PASS


def test_an_os_family_mismatch_fails_and_a_release_drift_warns(cluster, fleet):
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], os=parse_os_release(fx("os", "rocky9")))
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "worker-1", "os").status is Status.FAIL
    assert "not supported" in result(report, "worker-1", "os").message
    assert result(report, "cp-1", "os-consistency").status is Status.FAIL
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], os=parse_os_release(fx("os", "ubuntu2404")))
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "worker-1", "os").status is Status.PASS
    assert result(report, "worker-1", "os-consistency").status is Status.WARN
    assert result(report, "cp-1", "os-consistency").status is Status.PASS


def test_an_unreachable_host_fails_reachable_and_the_others_are_still_checked(cluster, fleet):
    fleet["etcd-3"] = FactsError("etcd-3", "not reached: could not connect after 3 attempt(s): timed out")
    report = run_preflight(cluster, fleet, now=NOW)
    assert result(report, "etcd-3", "reachable").status is Status.FAIL
    assert [r.check for r in report.for_host("etcd-3")] == ["reachable"]
    assert result(report, "etcd-1", "ports").status is Status.PASS
    assert result(report, "cp-1", "swap").status is Status.PASS


def test_slow_fsync_on_an_etcd_host_warns(cluster, fleet):
    probes = ProbeResults(fsync={
        "etcd-1": FsyncResult("/var/lib", 200, 25.0, 40.0, 12.0),
        "etcd-2": FsyncResult("/var/lib", 200, 2.0, 3.0, 1.0),
        "etcd-3": FsyncResult(problem="fsync probe failed: python3 is not installed"),
    })
    report = run_preflight(cluster, fleet, now=NOW, probes=probes)
    assert result(report, "etcd-1", "etcd-fsync").status is Status.WARN
    assert "p99 25.0 ms" in result(report, "etcd-1", "etcd-fsync").message
    assert result(report, "etcd-2", "etcd-fsync").status is Status.PASS
    assert "python3" in result(report, "etcd-3", "etcd-fsync").message


def test_a_peer_port_that_cannot_be_reached_fails_on_the_source_host(cluster, fleet):
    probes = ProbeResults(
        listening={"cp-1": Listening(pid=1, bound=(6443, 10250, 10257, 10259))},
        connectivity={
            "worker-1": ConnectResults((
                Connection("cp-1", "10.77.4.14", 22, True),
                Connection("cp-1", "10.77.4.14", 6443, False, "timed out"),
            )),
            "cp-1": ConnectResults((Connection("worker-1", "10.77.4.15", 22, True),)),
        },
    )
    report = run_preflight(cluster, fleet, now=NOW, probes=probes)
    r = result(report, "worker-1", "connectivity")
    assert r.status is Status.FAIL and "cp-1 6443 (timed out)" in r.message
    assert result(report, "cp-1", "connectivity").status is Status.PASS


def test_stacked_control_planes_need_the_etcd_ports_too():
    cluster = make_cluster(topology=EtcdTopology.STACKED, n_cp=1, n_workers=0)
    ports = parse_ports('#ss\nLISTEN 0 5 0.0.0.0:2380 0.0.0.0:* users:(("nc",pid=9,fd=3))\n')
    facts = {"cp-1": good(1, "cp-1", ports=ports)}
    r = result(run_preflight(cluster, facts, now=NOW), "cp-1", "ports")
    assert r.status is Status.FAIL and "2380 (etcd peer) is in use by nc" in r.message


def test_the_report_serialises_to_json_with_a_status_per_host(cluster, fleet):
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], swap=parse_swaps(fx("swap", "on")))
    data = json.loads(json.dumps(run_preflight(cluster, fleet, now=NOW).to_dict()))
    assert data["passed"] is False and data["generated_at"] == NOW
    assert data["hosts"]["worker-1"]["status"] == "fail" and data["hosts"]["cp-1"]["status"] in ("pass", "warn")


def test_ports_of_a_run_interrupted_before_its_record_are_still_ours(cluster, fleet):
    # applied.json is written last; etcd installed by kubeforge leaves its stamp before that
    from kubeforge.facts.parse_software import parse_membership

    ports = parse_ports('#ss\nLISTEN 0 4096 0.0.0.0:2379 0.0.0.0:* users:(("etcd",pid=7,fd=8))\n')
    interrupted = parse_membership(fx("membership", "interrupted"))
    fleet["etcd-1"] = dataclasses.replace(fleet["etcd-1"], ports=ports, membership=interrupted)
    assert result(run_preflight(cluster, fleet, now=NOW), "etcd-1", "ports").status is Status.PASS


def test_ports_on_a_host_recorded_for_another_cluster_are_not_ours(cluster, fleet):
    ports = parse_ports('#ss\nLISTEN 0 4096 0.0.0.0:10250 0.0.0.0:* users:(("kubelet",pid=7,fd=8))\n')
    applied = parse_applied(json.dumps({"cluster": "someone-elses"}))
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], ports=ports, applied=applied)
    r = result(run_preflight(cluster, fleet, now=NOW), "worker-1", "ports")
    assert r.status is Status.FAIL and "10250 (kubelet) is in use by kubelet" in r.message


def test_any_program_kubeforge_runs_holding_a_role_port_of_a_managed_host_counts_as_ours(cluster, fleet):
    # such a program is there because kubeforge put it there; which one holds which port is not
    # preflight's business (the health gates of `up` judge the services themselves)
    ports = parse_ports('#ss\nLISTEN 0 4096 *:6443 *:* users:(("kubelet",pid=7,fd=8))\n')
    applied = parse_applied(json.dumps({"cluster": cluster.name}))
    fleet["cp-1"] = dataclasses.replace(fleet["cp-1"], ports=ports, applied=applied)
    assert result(run_preflight(cluster, fleet, now=NOW), "cp-1", "ports").status is Status.PASS


def test_connectivity_flows_follow_roles_not_every_pair_of_ports(cluster):
    from kubeforge.facts.preflight.requirements import flows

    etcd1, cp1, worker1 = cluster.host("etcd-1"), cluster.host("cp-1"), cluster.host("worker-1")
    assert flows(cluster, cp1, etcd1) == (2379,)
    assert flows(cluster, cluster.host("etcd-2"), etcd1) == (2379, 2380)
    assert flows(cluster, worker1, etcd1) == ()  # workers never talk to etcd
    assert flows(cluster, worker1, cp1) == (6443,)
    assert flows(cluster, cp1, worker1) == (10250,)
    assert flows(cluster, cp1, cp1) == ()


def test_ssh_between_hosts_that_fails_only_warns(cluster, fleet):
    probes = ProbeResults(
        connectivity={
            "worker-1": ConnectResults((
                Connection("cp-1", "10.77.4.14", 22, False, "timed out"),
                Connection("cp-1", "10.77.4.14", 6443, True),
            )),
        },
    )
    r = result(run_preflight(cluster, fleet, now=NOW, probes=probes), "worker-1", "connectivity")
    assert r.status is Status.WARN and "SSH of cp-1 22 (timed out)" in r.message


def _as_user(cluster, name: str, user: str, *, sudo: bool = True):
    hosts = tuple(
        dataclasses.replace(h, ssh=dataclasses.replace(h.ssh, user=user, sudo=sudo)) if h.name == name else h
        for h in cluster.hosts
    )
    return dataclasses.replace(cluster, hosts=hosts)


def test_a_login_user_without_passwordless_sudo_fails_preflight_saying_how_to_fix_it(cluster, fleet):
    cluster = _as_user(cluster, "worker-1", "kube")
    fleet["worker-1"] = dataclasses.replace(
        fleet["worker-1"], problems={"sudo": "gathered without root (sudo: a password is required)"})
    report = run_preflight(cluster, fleet, now=NOW)
    r = result(report, "worker-1", "sudo")
    assert r.status is Status.FAIL and "passwordless sudo does not work for kube" in r.message
    assert "kube ALL=(ALL) NOPASSWD: ALL" in r.message and report.failed
    assert result(report, "etcd-1", "sudo").status is Status.PASS


def test_a_user_with_passwordless_sudo_passes_and_one_with_sudo_off_fails(cluster, fleet):
    report = run_preflight(_as_user(cluster, "worker-1", "kube"), fleet, now=NOW)
    assert result(report, "worker-1", "sudo").status is Status.PASS
    report = run_preflight(_as_user(cluster, "worker-1", "kube", sudo=False), fleet, now=NOW)
    r = result(report, "worker-1", "sudo")
    assert r.status is Status.FAIL and "ssh.sudo is false" in r.message


def test_a_node_whose_resolv_conf_names_no_name_server_warns_that_coredns_will_not_start(cluster, fleet):
    from kubeforge.facts.parse_system import parse_dns

    none = parse_dns(fx("dns", "none"))
    for name in fleet:
        fleet[name] = dataclasses.replace(fleet[name], dns=none)
    report = run_preflight(cluster, fleet, now=NOW)
    for node in ("cp-1", "worker-1"):
        r = result(report, node, "dns")
        assert r.status is Status.WARN and "/etc/resolv.conf names no name server" in r.message
        assert "plugin/forward: no nameservers found" in r.message
    assert report.get("etcd-1", "dns") is None  # a dedicated etcd member runs no CoreDNS
    assert not report.failed
    fleet["worker-1"] = dataclasses.replace(fleet["worker-1"], dns=parse_dns(fx("dns", "nameserver")))
    r = result(run_preflight(cluster, fleet, now=NOW), "worker-1", "dns")
    assert r.status is Status.PASS and "10.255.255.53" in r.message

"""The upgrade's probes, guards and gates run as written against a real etcd 3.4.23 on loopback.

The scripts address members at their TLS client URL with kubeforge's certificate paths; here the
same scripts are pointed at a plain-HTTP etcd on 127.0.0.1 (the URL, the TLS flags and the metrics
port are the only things rewritten), so their parsing of real etcdctl and metrics output is what is
tested.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from kubeforge.facts.etcd_upgrade import (
    METRICS_PORT,
    auth_probe_command,
    member_version_command,
    parse_auth,
    parse_member_version,
)
from kubeforge.plan.etcd.upgrade_checks import cluster_version_reached, move_leadership_away, not_leader_or_done, runs_version
from tests.factories import make_cluster
from tests.need import skip_or_fail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        skip_or_fail("etcd/etcdctl are not installed (apt-get install etcd-server etcd-client)")
    d = tmp_path_factory.mktemp("etcd")
    cport, pport, mport = _free_port(), _free_port(), _free_port()
    client = f"http://127.0.0.1:{cport}"
    proc = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(d / "data"), "--listen-client-urls", client,
         "--advertise-client-urls", client, "--listen-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"t=http://127.0.0.1:{pport}", "--listen-metrics-urls", f"http://127.0.0.1:{mport}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "ETCDCTL_API": "3"}
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["etcdctl", f"--endpoints={client}", "endpoint", "health"], env=env,
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "etcd did not become healthy"
            time.sleep(0.2)
        yield client, mport
    finally:
        proc.terminate()
        proc.wait(10)


def run(script: str, client: str, mport: int) -> subprocess.CompletedProcess:
    """``script`` as kubeforge would send it, pointed at the loopback etcd."""
    script = re.sub(r" --(cacert|cert|key)=\S+", "", script)
    script = re.sub(r"https://10\.77\.4\.\d+:2379", client, script)
    script = re.sub(r"/dev/tcp/10\.77\.4\.\d+/2379", "/dev/tcp/" + client.removeprefix("http://").replace(":", "/"), script)
    script = script.replace(f"/dev/tcp/127.0.0.1/{METRICS_PORT}", f"/dev/tcp/127.0.0.1/{mport}")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.fixture
def member():
    cluster = make_cluster(etcd_version="3.4.23", n_etcd=1)
    return cluster, cluster.etcd_members[0]


def test_the_restart_guard_reads_the_version_the_running_process_answers_with(etcd, member):
    cluster, m = member
    assert run(runs_version(cluster, m, "3.4.23").script, *etcd).returncode == 0
    assert run(runs_version(cluster, m, "3.5.16").script, *etcd).returncode == 1


def test_the_leadership_guard_skips_only_a_member_that_does_not_lead_or_is_done(etcd, member):
    cluster, m = member  # a single member always leads
    assert run(not_leader_or_done(cluster, m, "3.5.16").script, *etcd).returncode == 1
    assert run(not_leader_or_done(cluster, m, "3.4.23").script, *etcd).returncode == 0


def test_the_cluster_version_gate_reads_etcds_own_metrics(etcd, member):
    cluster, m = member
    assert run(cluster_version_reached(cluster, (m,), "3.4.23").script, *etcd).returncode == 0
    waiting = run(cluster_version_reached(cluster, (m,), "3.5.16").script, *etcd)
    assert waiting.returncode == 1 and "cluster version 3.4, waiting for 3.5" in waiting.stderr


def test_auth_is_read_from_a_real_3_4_etcd_before_and_after_it_is_enabled(etcd, member):
    cluster, m = member
    client, mport = etcd
    probe = auth_probe_command(cluster, m, (3, 4)).script
    assert parse_auth(run(probe, client, mport).stdout).enabled is False
    env = {**os.environ, "ETCDCTL_API": "3"}
    ctl = ["etcdctl", f"--endpoints={client}"]
    for args in (["user", "add", "root:pw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"]):
        subprocess.run(ctl + args, env=env, check=True, capture_output=True)
    # users exist, auth still off: a 3.4 etcd cannot say which, so the upgrade must not assume
    assert parse_auth(run(probe, client, mport).stdout).enabled is None
    subprocess.run(ctl + ["auth", "enable"], env=env, check=True, capture_output=True)
    try:
        state = parse_auth(run(probe, client, mport).stdout)
        assert state.enabled is True and "user name is empty" in state.detail
    finally:
        subprocess.run(ctl + ["--user", "root:pw", "auth", "disable"], env=env, check=True, capture_output=True)


def test_the_version_probe_reads_a_real_3_4_member_and_a_3_4_cluster_from_its_metrics(etcd, member):
    mv = parse_member_version("t", run(member_version_command().script, *etcd).stdout)
    assert (mv.server, mv.cluster, mv.apply_panics) == ("3.4.23", "3.4", 0)


def test_a_stopped_member_has_no_leadership_to_hand_over(etcd, member):
    cluster, m = member
    other = make_cluster(etcd_version="3.4.23", n_etcd=2).etcd_members[1]
    res = run(move_leadership_away(cluster, m, (other,), "3.5.16").script, f"http://127.0.0.1:{_free_port()}", etcd[1])
    assert res.returncode == 0 and "not serving, so not the leader" in res.stdout


def test_the_restart_guard_of_a_stopped_member_says_so_at_once_not_after_etcdctls_timeout(etcd, member):
    # the apt upgrade's prerm stops etcd before the restart step: its guard must not wait 15 s for it
    cluster, m = member
    res = run(runs_version(cluster, m, "3.4.23").script, f"http://127.0.0.1:{_free_port()}", etcd[1])
    assert res.returncode == 1
    # nothing listens, so etcdctl is never asked (it would retry until "context deadline exceeded")
    assert "deadline exceeded" not in res.stdout + res.stderr and "endpoint" not in res.stderr

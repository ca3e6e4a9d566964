"""The haproxy + keepalived API endpoint for real on the lab: two load balancers share a VIP on the
lab's bridge (VRRP between real keepalived daemons), real haproxy balances two control planes whose
API servers are the simulator's (TLS on 6443, /readyz), three external etcd members, one worker.

The tests run in order on one lab: up -> the VIP on exactly one balancer, kubectl through it -> the
balancer holding the VIP loses keepalived, then haproxy, then power, the other takes it each time ->
one API server stops, haproxy's check takes it out -> everything back -> a second up changes nothing."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

# Two control planes need external etcd (kubeforge refuses a 2-member stacked etcd). Three members:
# `certs renew` and `certs rotate-ca --ca etcd` restart them one at a time under quorum, so the API
# servers behind the VIP always have an etcd to answer from (with one member, none is ready while it
# restarts).
LAYOUT = [("lb-1", ("load-balancer",)), ("lb-2", ("load-balancer",)), ("etcd-1", ("etcd",)), ("etcd-2", ("etcd",)),
          ("etcd-3", ("etcd",)), ("cp-1", ("control-plane",)), ("cp-2", ("control-plane",)), ("worker-1", ("worker",))]
LBS = ("lb-1", "lb-2")
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")
NODES = {"cp-1", "cp-2", "worker-1"}
REPO = Path(__file__).resolve().parents[2]
ADMIN_ON_WORKER = "/root/kubeforge-admin.conf"  # kubeforge's local admin kubeconfig, copied in
# haproxy's admin socket (the rendered `stats socket`), read with the machines' python3: no socat there
SHOW_STAT = ("import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
             "s.sendall(b'show stat\\n'); print(s.makefile().read())")


# what a failure report shows of a balancer: its units' logs, sockets and addresses
DIAGNOSE = ("journalctl --no-pager -n 40 -u haproxy -u keepalived; ss -ltnp; ip -4 addr show dev host0; "
            "cat /etc/haproxy/haproxy.cfg")


@dataclass
class Env:
    lab: object
    dir: Path
    inventory: Path
    vip: str

    def kf(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(self.inventory)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False, env=env)

    def diagnose(self) -> str:
        return "\n".join(f"--- {lb}\n" + self.lab.exec(lb, ["bash", "-c", DIAGNOSE]).stdout for lb in LBS)

    @property
    def state(self) -> Path:
        """The cluster's directory in kubeforge's local store (admin.conf, pki/, runs/)."""
        return self.dir / ".kubeforge" / YAML(typ="safe").load(self.inventory.read_text())["metadata"]["name"]

    @property
    def admin_conf(self) -> Path:
        return self.state / "admin.conf"

    def vip_holders(self) -> list[str]:
        return [lb for lb in LBS if self.lab.running(lb)
                and f"inet {self.vip}/32" in self.lab.exec(lb, ["ip", "-4", "addr", "show", "dev", "host0"]).stdout]

    def kubectl_nodes(self) -> subprocess.CompletedProcess:
        """kubectl on the worker with the admin kubeconfig kubeforge wrote, explicitly at the VIP."""
        return self.lab.exec("worker-1", ["kubectl", "--kubeconfig", ADMIN_ON_WORKER, "--server",
                                          f"https://{self.vip}:6443", "get", "nodes", "-o", "name"], timeout=60)

    def backend_status(self, lb: str) -> dict[str, str]:
        out = self.lab.exec(lb, ["python3", "-c", SHOW_STAT], check=True).stdout
        rows = [line.split(",") for line in out.splitlines() if line.startswith("kube-apiserver,")]
        return {r[1]: r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}


def readyz_through_vip(vip: str, timeout: float = 10.0) -> bool:
    """One TLS request from the runner (the bridge's gateway) to the VIP, as any https client makes it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the cluster CA is not what this probe is about
    try:
        with socket.create_connection((vip, 6443), timeout=timeout) as raw, ctx.wrap_socket(raw) as s:
            s.sendall(f"GET /readyz HTTP/1.1\r\nHost: {vip}\r\nConnection: close\r\n\r\n".encode())
            status = s.recv(64).split(b"\r\n", 1)[0].split()
            return len(status) >= 2 and status[1] == b"200"
    except (OSError, ssl.SSLError):
        return False


def wait_until(what: str, probe, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        value = probe()
        if value:
            return time.monotonic() - started, value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def steady_answers(vip: str, count: int, timeout: float) -> int:
    """Requests through the VIP until ``count`` succeed in a row; returns how many failed before."""
    failed, run = 0, 0
    deadline = time.monotonic() + timeout
    while run < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the API did not answer {count} times in a row through {vip} within {timeout:.0f}s")
        if readyz_through_vip(vip):
            run += 1
        else:
            failed, run = failed + 1, 0
            time.sleep(0.2)
    return failed


def latest_report(env: Env) -> dict:
    runs = (env.dir / ".kubeforge").glob("*/runs/*-up/report.json")
    return json.loads(max(runs, key=lambda p: p.stat().st_mtime).read_text())


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory(LAYOUT, endpoint_mode="haproxy", persistent=("lb-1",))
    d = tmp_path_factory.mktemp("haproxy-lab")
    inventory = lab.write_inventory(d / "inventory.yaml")
    doc = YAML(typ="safe").load(inventory.read_text())
    endpoint = doc["spec"]["controlPlaneEndpoint"]
    assert endpoint["mode"] == "haproxy" and doc["spec"]["etcd"]["topology"] == "external", doc["spec"]
    return Env(lab, d, inventory, endpoint["host"])


def test_up_converges_with_haproxy_and_keepalived_active_on_both_balancers(env):
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + env.diagnose()
    steps = latest_report(env)["steps"]
    phases = [s["phase"] for s in steps]
    # the joins waited until the API answered through the VIP, not only on cp-1
    assert [s["status"] for s in steps if s["phase"] == "WaitEndpoint"] == ["done"]
    assert phases.index("WaitEndpoint") < phases.index("JoinControlPlanes")
    for lb in LBS:
        units = env.lab.exec(lb, ["systemctl", "is-active", "haproxy", "keepalived"]).stdout.split()
        assert units == ["active", "active"], (lb, units)
        assert env.lab.exec(lb, ["systemctl", "is-enabled", "haproxy", "keepalived"]).stdout.split() == ["enabled"] * 2


def test_exactly_one_balancer_holds_the_vip(env):
    # keepalived settles within a few adverts after start
    _, holders = wait_until("one VIP holder", lambda: (h := env.vip_holders()) and len(h) == 1 and h, 15)
    assert holders == ["lb-1"], "lb-1 has the highest priority and preempts"
    time.sleep(3)
    assert env.vip_holders() == ["lb-1"], "the VIP must stay put, not flap between balancers"


def test_kubectl_through_the_vip_lists_every_node(env):
    server = re.search(r"server:\s*(\S+)", env.admin_conf.read_text()).group(1)
    assert server == f"https://{env.vip}:6443", "kubeforge's admin kubeconfig points at the endpoint"
    env.lab.exec("worker-1", ["install", "-m", "0600", "/dev/stdin", ADMIN_ON_WORKER], input=env.admin_conf.read_text(), check=True)
    res = env.kubectl_nodes()
    assert res.returncode == 0, res.stderr
    assert {line.split("/", 1)[1] for line in res.stdout.split()} == NODES
    assert readyz_through_vip(env.vip), "the runner, on the bridge, reaches the API over TLS at the VIP"


def test_kubeadm_configs_and_kubelet_kubeconfigs_name_the_vip(env):
    endpoint = f"{env.vip}:6443"
    init = env.lab.exec("cp-1", ["cat", "/etc/kubeforge/kubeadm-init.yaml"], check=True).stdout
    assert f"controlPlaneEndpoint: {endpoint}" in init
    for node, cfg in (("cp-2", "/etc/kubeforge/kubeadm-join.yaml"), ("worker-1", "/etc/kubeforge/kubeadm-join.yaml")):
        join = env.lab.exec(node, ["cat", cfg], check=True).stdout
        assert f"apiServerEndpoint: {endpoint}" in join, (node, join)
    for node in sorted(NODES):
        kubelet = env.lab.exec(node, ["cat", "/etc/kubernetes/kubelet.conf"], check=True).stdout
        assert f"server: https://{endpoint}" in kubelet, (node, kubelet)


def test_the_other_balancer_takes_the_vip_when_keepalived_stops_and_the_api_still_answers(env):
    assert env.vip_holders() == ["lb-1"]
    started = time.monotonic()
    env.lab.exec("lb-1", ["systemctl", "stop", "keepalived"], check=True)
    wait_until("lb-2 holding the VIP alone", lambda: env.vip_holders() == ["lb-2"], 10)
    took = time.monotonic() - started
    failed = steady_answers(env.vip, 5, 15)
    print(f"keepalived stopped: VIP on lb-2 {took:.1f}s after the stop began; {failed} requests failed before 5 answered in a row")
    res = env.kubectl_nodes()
    assert res.returncode == 0, res.stderr
    env.lab.exec("lb-1", ["systemctl", "start", "keepalived"], check=True)
    wait_until("the VIP back on lb-1 (higher priority)", lambda: env.vip_holders() == ["lb-1"], 15)
    steady_answers(env.vip, 5, 15)


def test_the_holder_gives_the_vip_up_when_its_haproxy_stops(env):
    # keepalived stays up: only its check script (haproxy running and accepting) tells it to let go
    assert env.vip_holders() == ["lb-1"]
    started = time.monotonic()
    env.lab.exec("lb-1", ["systemctl", "stop", "haproxy"], check=True)
    try:
        wait_until("lb-2 holding the VIP alone", lambda: env.vip_holders() == ["lb-2"], 20)
        took = time.monotonic() - started
        failed = steady_answers(env.vip, 5, 15)
        print(f"haproxy stopped on lb-1: VIP on lb-2 {took:.1f}s later; {failed} requests failed before 5 answered in a row")
        assert took < 12, "two failed checks 3 s apart, then the next advert"
    finally:
        env.lab.exec("lb-1", ["systemctl", "start", "haproxy"], check=True)
    wait_until("the VIP back on lb-1 once its haproxy runs", lambda: env.vip_holders() == ["lb-1"], 30)
    steady_answers(env.vip, 5, 15)


def test_the_other_balancer_takes_the_vip_when_the_holder_loses_power(env):
    assert env.vip_holders() == ["lb-1"]
    started = time.monotonic()
    env.lab.stop_machine("lb-1")  # no clean shutdown: lb-2 only notices the missing adverts
    wait_until("lb-2 holding the VIP", lambda: env.vip_holders() == ["lb-2"], 15)
    took = time.monotonic() - started
    failed = steady_answers(env.vip, 5, 20)
    print(f"lb-1 powered off: VIP on lb-2 after {took:.1f}s; {failed} requests failed before 5 answered in a row")
    assert took < 10, "three missed adverts (1 s each) and the VIP moves"
    assert env.kubectl_nodes().returncode == 0
    # lb-1 keeps its disk: haproxy and keepalived start at boot (enabled by up) and take the VIP back
    env.lab.start_machine("lb-1")
    try:
        wait_until("the VIP back on lb-1 after its boot", lambda: env.vip_holders() == ["lb-1"], 150, 0.5)
    except pytest.fail.Exception:
        seen = env.lab.exec("lb-1", ["bash", "-c", "systemctl is-active haproxy keepalived; ip -4 -br addr; "
                                     "journalctl -b --no-pager -n 30 -u keepalived -u haproxy"]).stdout
        pytest.fail(f"the VIP did not come back to lb-1 within 150s of its boot (holders {env.vip_holders()}):\n{seen}")
    assert env.lab.exec("lb-1", ["systemctl", "is-active", "haproxy", "keepalived"]).stdout.split() == ["active"] * 2
    steady_answers(env.vip, 5, 20)


def test_haproxy_takes_a_stopped_api_server_out_and_the_api_still_answers(env):
    # the kubelet would start the API server again: stop it first (KillMode=process leaves the server)
    # and wait until it is gone: a request caught inside the dying process is lost by any balancer;
    # what is asserted below is that connections the stopped server refuses are retried elsewhere
    env.lab.exec("cp-1", ["bash", "-c", "pid=$(cat /run/kubesim/kube-apiserver.pid); systemctl stop kubelet && kill $pid "
                          "&& for _ in $(seq 100); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1"],
                 check=True)
    try:
        started = time.monotonic()
        answered = failed = 0
        # every request until haproxy's check has taken cp-1 out: a retry is redispatched to cp-2
        while not all(env.backend_status(lb).get("cp-1") == "DOWN" for lb in LBS):
            if time.monotonic() - started > 40:
                pytest.fail(f"haproxy did not mark cp-1 DOWN within 40s: {[env.backend_status(lb) for lb in LBS]}")
            for _ in range(4):
                ok = readyz_through_vip(env.vip)
                answered, failed = answered + ok, failed + (not ok)
        took = time.monotonic() - started
        print(f"haproxy took cp-1 out in {took:.1f}s; meanwhile {answered} requests answered, {failed} failed")
        assert failed == 0, "a refused connection to the stopped server must be retried on the other one"
        assert all(env.backend_status(lb).get("cp-2") == "UP" for lb in LBS)
        assert steady_answers(env.vip, 10, 10) == 0, "with cp-1 out every request goes to cp-2"
        assert env.kubectl_nodes().returncode == 0
    finally:
        env.lab.exec("cp-1", ["systemctl", "start", "kubelet"], check=True)
    wait_until("haproxy taking cp-1 back", lambda: all(env.backend_status(lb).get("cp-1") == "UP" for lb in LBS), 60, 1.0)


def test_a_second_up_changes_nothing(env):
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    rep = latest_report(env)
    assert rep["outcome"] == "succeeded"
    assert [s for s in rep["steps"] if s["status"] == "done"] == []
    assert env.vip_holders() == ["lb-1"]
    violations = env.lab.exec("cp-1", ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "sim", "violations"], check=True)
    assert json.loads(violations.stdout) == []


def served_sans(env: Env, cp: str) -> str:
    """The subjectAltName of the certificate the API server on ``cp`` serves, as openssl prints it."""
    res = env.lab.exec(cp, ["bash", "-c", f"openssl s_client -connect {env.lab.address(cp)}:6443 </dev/null 2>/dev/null "
                                          "| openssl x509 -noout -ext subjectAltName"])
    return res.stdout


def test_a_new_extra_san_is_issued_on_each_control_plane_in_turn_and_a_second_up_plans_nothing(env):
    """docs/certs.md "SAN changes": an extraSANs entry added to the inventory; `up` re-issues each
    running API server's certificate (kubeadm, old pair moved aside), restarts it and waits for its
    /readyz before the next, each drained on both balancers around its restart (docs/certs.md
    "Restarting an API server behind haproxy"): no request through the VIP fails; a second `up`
    plans nothing."""
    from tests.integration.polling import while_polling

    yaml = YAML()
    doc = yaml.load(env.inventory.read_text())
    doc["spec"]["controlPlaneEndpoint"]["extraSANs"] = ["api.certs.test"]
    with env.inventory.open("w") as f:
        yaml.dump(doc, f)
    res, polls, failed = while_polling(lambda: None if readyz_through_vip(env.vip) else "no answer",
                                       lambda: env.kf("up", "--yes"), 0.2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + env.diagnose()
    print(f"during the SAN re-issue: {polls - len(failed)} requests through the VIP answered, {len(failed)} failed")
    assert polls >= 5 and failed == [], failed
    done = [(s["host"], s["title"]) for s in latest_report(env)["steps"]
            if s["phase"] == "ReissueApiserverCerts" and s["status"] == "done"]
    order = [(h, t.split(" ")[0]) for h, t in done if t.startswith(("Re-issue", "Drain", "Restart", "Wait", "Re-enable"))]
    assert order == [(h, verb) for cp in ("cp-1", "cp-2") for h, verb in (
        (cp, "Re-issue"), ("lb-1", "Drain"), ("lb-2", "Drain"), (cp, "Restart"), (cp, "Wait"),
        ("lb-1", "Re-enable"), ("lb-2", "Re-enable"), (cp, "Wait"))], done
    assert all(set(env.backend_status(lb).values()) == {"UP"} for lb in LBS), "both servers back in rotation"
    for cp in ("cp-1", "cp-2"):
        on_disk = env.lab.exec(cp, ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                                    "/etc/kubernetes/pki/apiserver.crt"], check=True).stdout
        assert "DNS:api.certs.test" in on_disk and "DNS:api.certs.test" in served_sans(env, cp), on_disk
        ok = env.lab.exec(cp, ["openssl", "verify", "-CAfile", "/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/apiserver.crt"])
        assert ok.returncode == 0, ok.stdout + ok.stderr
    again = env.kf("up", "--yes")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [s for s in latest_report(env)["steps"] if s["status"] == "done"] == []


@dataclass
class Watched:
    """What the VIP poller, tests/faults' writer and its quorum watcher saw while kubeforge ran."""

    res: subprocess.CompletedProcess
    seconds: float
    polls: int
    failed: list[str]
    writer: object
    watcher: object
    lost: list[str] | None

    def summary(self) -> str:
        answered, gap = self.polls - len(self.failed), max(self.watcher.gaps(), default=0.0)
        return (f"{self.seconds:.1f} s; {answered} requests through the VIP answered, {len(self.failed)} failed; "
                f"{len(self.writer.acked)} etcd writes acknowledged, {self.writer.failed} refused, "
                f"{len(self.lost or [])} lost; longest gap without a linearizable read {gap:.1f} s")


def kf_watched(env: Env, tmp_path: Path, tag: str, *args: str) -> Watched:
    """Run kubeforge while the runner sends /readyz through the VIP every 0.2 s and tests/faults'
    writer (a put every 100 ms) and quorum watcher (a linearizable read every 100 ms) work on the three
    members: with the health-check client of the etcd CA in place and, as soon as a `certs rotate-ca`
    has written its new CA to the store, a client of the new CA too (members show leaves of the new
    CA from phase 2 on and refuse the old CA's client after phase 3)."""
    from tests.faults.etcdwire import ClientCerts, QuorumWatcher, Writer
    from tests.faults.pki import new_ca_client
    from tests.integration.polling import while_polling

    addresses = [env.lab.address(m) for m in MEMBERS]
    old = ClientCerts.fetch(env.lab, MEMBERS[0], tmp_path / "old-ca")
    watcher, writer = QuorumWatcher(addresses, old), Writer(addresses, old, tag=f"{tag}-{time.time_ns()}")
    new: list[ClientCerts] = []
    done = threading.Event()

    def follow_the_new_ca() -> None:
        while not done.wait(0.1):
            certs = new_ca_client(env.state / "pki", tmp_path / "new-ca")
            if certs is not None:
                watcher.also_with(certs)
                writer.also_with(certs)
                new.append(certs)
                return

    follower = threading.Thread(target=follow_the_new_ca, daemon=True)
    for t in (watcher, writer, follower):
        t.start()
    started = time.monotonic()
    try:
        res, polls, failed = while_polling(lambda: None if readyz_through_vip(env.vip) else f"{time.time():.1f}",
                                           lambda: env.kf(*args), 0.2)
    finally:
        seconds = time.monotonic() - started
        done.set()
        follower.join(30)
        writer.stop()
        watcher.stop()
    return Watched(res, seconds, polls, failed, writer, watcher, writer.lost(addresses, new[0] if new else old))


def latest_steps(env: Env, workflow: str) -> list[dict]:
    run = max(env.state.glob(f"runs/*-{workflow}/report.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(run.read_text())["steps"]


def unverified_etcd_leaves(env: Env) -> dict[str, str]:
    """Each member's and control plane's etcd leaves that `openssl verify` refuses against the etcd CA
    file on that host (each host's output when not all verify)."""
    out = {}
    for host, ca, leaves in [*((m, "/etc/etcd/pki/ca.crt", [f"/etc/etcd/pki/{n}.crt" for n in ("server", "peer", "healthcheck-client")])
                               for m in MEMBERS),
                             *((cp, "/etc/kubernetes/pki/etcd/ca.crt", ["/etc/kubernetes/pki/apiserver-etcd-client.crt"])
                               for cp in ("cp-1", "cp-2"))]:
        res = env.lab.exec(host, ["openssl", "verify", "-CAfile", ca, *leaves])
        if res.returncode != 0 or res.stdout.count(": OK") != len(leaves):
            out[host] = res.stdout + res.stderr
    return out


def test_certs_renew_of_every_member_and_control_plane_keeps_the_vip_answering_quorum_held_and_writes_acknowledged(
        env, tmp_path):
    """docs/certs.md "Proof": `certs renew --all` (the three etcd members one at a time, each gated on
    quorum; then both control planes: the API server's etcd client pair pushed, kubeadm's certificates
    renewed, kube-apiserver drained on both balancers, restarted, re-enabled, one at a time) while
    requests go through the VIP and a writer and a quorum watcher work on etcd: 0 failed requests, 0
    acknowledged writes lost, quorum never lost; then `certs check` finds nothing expiring and every
    leaf verifies against its CA on its host."""
    before = {cp: env.lab.exec(cp, ["sha256sum", "/etc/kubernetes/pki/apiserver.crt"], check=True).stdout.split()[0]
              for cp in ("cp-1", "cp-2")}
    before |= {m: env.lab.exec(m, ["sha256sum", "/etc/etcd/pki/server.crt"], check=True).stdout.split()[0] for m in MEMBERS}
    w = kf_watched(env, tmp_path, "renew", "certs", "renew", "--all", "--yes")
    assert w.res.returncode == 0, w.res.stdout[-3000:] + w.res.stderr[-3000:] + env.diagnose()
    print(f"during certs renew --all: {w.summary()}")
    steps = latest_steps(env, "certs-renew")
    print("drain / re-enable / endpoint gate seconds: " + ", ".join(
        f"{s['host']}:{s['title'].split()[0]}={s['duration']:.1f}" for s in steps
        if s["title"].startswith(("Drain", "Re-enable", "Wait for the API at"))))
    restarted = [s["host"] for s in steps if s["status"] == "done" and s["step"].split("/", 2)[2] in ("restart-etcd", "restart-apiserver")]
    assert restarted == [*MEMBERS, "cp-1", "cp-2"], restarted
    assert w.polls >= 5 and w.failed == [], w.failed
    assert w.writer.acked and w.lost == [], w.lost
    assert w.watcher.losses() == [], w.watcher.gaps()
    assert all(set(env.backend_status(lb).values()) == {"UP"} for lb in LBS), "both servers back in rotation"
    for host in (*MEMBERS, "cp-1", "cp-2"):
        path = "/etc/etcd/pki/server.crt" if host in MEMBERS else "/etc/kubernetes/pki/apiserver.crt"
        after = env.lab.exec(host, ["sha256sum", path], check=True).stdout.split()[0]
        assert after != before[host], f"{host}: {path} was not renewed"
    for cp in ("cp-1", "cp-2"):
        pki = "/etc/kubernetes/pki"
        ok = env.lab.exec(cp, ["bash", "-c", f"openssl verify -CAfile {pki}/ca.crt {pki}/apiserver.crt {pki}/apiserver-kubelet-client.crt"
                                             f" && openssl verify -CAfile {pki}/front-proxy-ca.crt {pki}/front-proxy-client.crt"])
        assert ok.returncode == 0 and ok.stdout.count(": OK") == 3, ok.stdout + ok.stderr
    assert unverified_etcd_leaves(env) == {}
    check = env.kf("certs", "check", "--within-days", "30", "-o", "json")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert json.loads(check.stdout)["differences"] == []
    # what renew placed is what kubeforge records as placed: `up` afterwards restarts nothing
    again = env.kf("up", "--yes")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [s["step"] for s in latest_report(env)["steps"] if s["status"] == "done"] == []


# each of the three phases of `rotate-ca --ca front-proxy`: its API servers, its record in the store
FRONT_PROXY_PHASES = [name for stem in ("TrustBothFrontProxyCAs", "ReissueFrontProxyClients", "DropOldFrontProxyCA")
                      for name in (f"{stem}OnApiServers", f"Record{stem}")]
FP_PKI = "/etc/kubernetes/pki"


def as_front_proxy(vip: str, pair: tuple[str, str], into: Path) -> int:
    """GET through the VIP as an aggregation-layer front proxy: ``pair`` (a front-proxy client
    certificate and key, PEM) and the user in X-Remote-User; the status, 0 when the handshake is
    refused (a client certificate from a CA the API server does not trust)."""
    import http.client

    into.mkdir(mode=0o700, parents=True, exist_ok=True)
    (into / "client.crt").write_text(pair[0])
    (into / "client.key").touch(mode=0o600)
    (into / "client.key").write_text(pair[1])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the serving certificate is not what this asks about
    ctx.load_cert_chain(str(into / "client.crt"), str(into / "client.key"))
    conn = http.client.HTTPSConnection(vip, 6443, context=ctx, timeout=10)
    try:
        conn.request("GET", "/kubesim/state?verb=list&resource=nodes",
                     headers={"X-Remote-User": "front-proxy-test", "X-Remote-Group": "system:masters"})
        return conn.getresponse().status
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def front_proxy_client(env: Env, cp: str) -> tuple[str, str]:
    return tuple(env.lab.exec(cp, ["cat", f"{FP_PKI}/front-proxy-client.{x}"], check=True).stdout  # type: ignore[return-value]
                 for x in ("crt", "key"))


def rotate_while_polling(env: Env, ca: str) -> tuple[float, float, int, list]:
    """`certs rotate-ca --ca <ca>` while the runner sends /readyz through the VIP every 0.2 s: (when it
    started, its seconds, requests sent, those that failed). A failure finishes the rotation
    (`--resume`) so the module's next tests find no rotation under way."""
    from tests.integration.polling import while_polling

    rotate = ("certs", "rotate-ca", "--ca", ca, "--yes")
    started = time.monotonic()
    try:
        res, polls, failed = while_polling(lambda: None if readyz_through_vip(env.vip) else f"{time.time():.1f}",
                                           lambda: env.kf(*rotate), 0.2)
        seconds = time.monotonic() - started
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + env.diagnose()
    finally:
        if (env.state / "pki" / "rotation" / f"{ca}-ca").exists():  # leave no rotation half done
            env.kf(*rotate, "--resume")
    print(f"during certs rotate-ca --ca {ca}: {seconds:.1f} s; {polls - len(failed)} requests through the VIP "
          f"answered, {len(failed)} failed")
    return started, seconds, polls, failed


def check_clean_and_up_idle(env: Env, started: float, seconds: float) -> None:
    """After a rotation: `certs check --within-days 30` exits 0 with no difference, and `up` does
    nothing (no step done): what the rotation placed is what kubeforge records as placed."""
    check = env.kf("certs", "check", "--within-days", "30", "-o", "json")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert json.loads(check.stdout)["differences"] == []
    up_started = time.monotonic()
    again = env.kf("up", "--yes")
    print(f"then certs check and up: {up_started - started - seconds:.1f} s, {time.monotonic() - up_started:.1f} s")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [s["step"] for s in latest_report(env)["steps"] if s["status"] == "done"] == []


@pytest.mark.by_hand  # about 45 s of lab time (six API server restarts, each drained): over CI's 40 s budget for it
def test_rotate_ca_front_proxy_rolls_both_api_servers_behind_haproxy_with_the_vip_answering_and_up_left_nothing_to_do(
        env, tmp_path):
    """docs/certs.md "Proof (front-proxy)": `certs rotate-ca --ca front-proxy` (three phases; in each,
    both control planes one at a time, kube-apiserver drained on both balancers around its restart)
    while requests go through the VIP: 0 failed; every API server ends with the new front-proxy CA
    alone and a front-proxy client that verifies against it and not against the old CA; through the
    VIP the new client is taken as a front proxy and the old one refused; `certs check` clean; `up`
    then does nothing. A failure finishes the rotation (`--resume`) so the module's next tests find
    no rotation under way."""
    store = env.state / "pki"
    old_ca = (store / "front-proxy-ca.crt").read_text()
    old_client = front_proxy_client(env, "cp-1")
    assert as_front_proxy(env.vip, old_client, tmp_path / "old") == 200  # the simulator checks front-proxy trust
    started, seconds, polls, failed = rotate_while_polling(env, "front-proxy")
    steps = latest_steps(env, "certs-rotate-ca")
    assert list(dict.fromkeys(s["phase"] for s in steps if s["status"] == "done")) == FRONT_PROXY_PHASES, steps
    restarted = [s["host"] for s in steps if s["status"] == "done" and s["step"].endswith("/restart-apiserver")]
    assert restarted == ["cp-1", "cp-2"] * 3, restarted
    assert polls >= 5 and failed == [], failed
    assert all(set(env.backend_status(lb).values()) == {"UP"} for lb in LBS), "both servers back in rotation"

    new_ca = (store / "front-proxy-ca.crt").read_text()
    assert new_ca != old_ca and not (store / "rotation" / "front-proxy-ca").exists()
    for cp in ("cp-1", "cp-2"):
        assert env.lab.exec(cp, ["cat", f"{FP_PKI}/front-proxy-ca.crt"], check=True).stdout == new_ca
        ok = env.lab.exec(cp, ["openssl", "verify", "-CAfile", f"{FP_PKI}/front-proxy-ca.crt", f"{FP_PKI}/front-proxy-client.crt"])
        assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr
        env.lab.exec(cp, ["tee", "/root/old-front-proxy-ca.crt"], input=old_ca, check=True)
        old = env.lab.exec(cp, ["openssl", "verify", "-CAfile", "/root/old-front-proxy-ca.crt", f"{FP_PKI}/front-proxy-client.crt"])
        assert old.returncode != 0, f"{cp}: the front-proxy client still verifies against the old CA"
    assert as_front_proxy(env.vip, front_proxy_client(env, "cp-2"), tmp_path / "new") == 200
    assert as_front_proxy(env.vip, old_client, tmp_path / "old") == 0  # refused in the handshake
    check_clean_and_up_idle(env, started, seconds)


# each of the three phases: its members, its API servers, its record in the store
ROTATION_PHASES = [name for stem in ("TrustBothCAs", "ReissueLeaves", "DropOldCA")
                   for name in (f"{stem}OnMembers", f"{stem}OnApiServers", f"Record{stem}")]


@pytest.mark.by_hand  # about a minute of lab time: three phases, each restarting three members and both API servers
def test_rotate_ca_etcd_on_three_members_keeps_the_vip_answering_quorum_held_and_writes_acknowledged(env, tmp_path):
    """docs/certs.md "Proof": `certs rotate-ca --ca etcd` (three phases; in each, the three members
    restarted one at a time under quorum, then both API servers, each drained on both balancers around
    its restart) while requests go through the VIP and a writer and a quorum watcher work on etcd
    (the old CA's client, and the new CA's once the store holds it): 0 failed requests, 0
    acknowledged writes lost, quorum never lost; every member and API server ends on the new CA alone."""
    old_ca = (env.state / "pki" / "etcd" / "ca.crt").read_text()
    w = kf_watched(env, tmp_path, "rotate", "certs", "rotate-ca", "--ca", "etcd", "--yes")
    if w.res.returncode != 0:
        # leave no rotation half done for the module's next tests: finish it, then report the failure
        again = env.kf("certs", "rotate-ca", "--ca", "etcd", "--resume", "--yes")
        pytest.fail(f"rotate-ca failed (exit {w.res.returncode}; a --resume then exited {again.returncode}):\n"
                    + w.res.stdout[-3000:] + w.res.stderr[-3000:] + env.diagnose())
    print(f"during certs rotate-ca --ca etcd: {w.summary()}")
    steps = latest_steps(env, "certs-rotate-ca")
    assert list(dict.fromkeys(s["phase"] for s in steps if s["status"] == "done")) == ROTATION_PHASES, steps
    assert w.polls >= 5 and w.failed == [], w.failed
    assert w.writer.acked and w.lost == [], w.lost
    assert w.watcher.losses() == [], w.watcher.gaps()
    assert all(set(env.backend_status(lb).values()) == {"UP"} for lb in LBS), "every server back in rotation"
    new_ca = (env.state / "pki" / "etcd" / "ca.crt").read_text()
    assert new_ca != old_ca and not (env.state / "pki" / "rotation" / "etcd-ca").exists()
    for host, path in [*((m, "/etc/etcd/pki/ca.crt") for m in MEMBERS),
                       *((cp, "/etc/kubernetes/pki/etcd/ca.crt") for cp in ("cp-1", "cp-2"))]:
        assert env.lab.exec(host, ["cat", path], check=True).stdout == new_ca, f"{host}: {path} is not the new CA alone"
    assert unverified_etcd_leaves(env) == {}
    # what the rotation placed is what kubeforge records as placed: `up` afterwards restarts nothing
    again = env.kf("up", "--yes")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert [s["step"] for s in latest_report(env)["steps"] if s["status"] == "done"] == []


# each of the three phases: the control planes, the workers, cluster-info and the local admin kubeconfig, its record
CLUSTER_CA_PHASES = [name for stem in ("TrustBothClusterCAs", "ReissueClusterLeaves", "DropOldClusterCA")
                     for name in (f"{stem}OnControlPlanes", f"{stem}OnWorkers", f"{stem}Copies", f"Record{stem}")]
KUBECONFIGS_ON = {"cp-1": ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"),
                  "cp-2": ("admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"),
                  "worker-1": ("kubelet.conf",)}


def kubeconfig_cas(env: Env, node: str, name: str) -> str:
    """The CA certificates a kubeconfig on ``node`` trusts (its certificate-authority-data, decoded)."""
    text = env.lab.exec(node, ["cat", f"/etc/kubernetes/{name}"], check=True).stdout
    return base64.b64decode(re.search(r"certificate-authority-data:\s*(\S+)", text).group(1)).decode()


@pytest.mark.by_hand  # minutes of lab time: three phases, each restarting every control plane's components and every kubelet
def test_rotate_ca_kubernetes_rolls_every_node_behind_haproxy_with_the_vip_answering_and_up_left_nothing_to_do(
        env, tmp_path):
    """docs/certs.md "Proof (kubernetes)": `certs rotate-ca --ca kubernetes` (three phases; in each, both
    control planes one at a time — kube-apiserver drained on both balancers around its restart, the
    controller manager, the scheduler and the kubelet restarted and gated — then the worker) while
    requests go through the VIP: 0 failed; every node ends with the new CA alone in ca.crt and in each
    kubeconfig, the API servers' certificates verify against it and not against the old CA; every node
    Ready; the local admin kubeconfig works through the VIP; `certs check` clean; `up` then does nothing.
    A failure finishes the rotation (`--resume`) so the module's next tests find no rotation under way."""
    store = env.state / "pki"
    old_ca = (store / "ca.crt").read_text()
    started, seconds, polls, failed = rotate_while_polling(env, "kubernetes")
    steps = latest_steps(env, "certs-rotate-ca")
    done = [s for s in steps if s["status"] == "done"]
    assert list(dict.fromkeys(s["phase"] for s in done)) == CLUSTER_CA_PHASES, steps
    assert [s["host"] for s in done if s["step"].endswith("/restart-apiserver")] == ["cp-1", "cp-2"] * 3
    assert [s["host"] for s in done if "/restart-kubelet-" in s["step"]] == ["cp-1", "cp-2", "worker-1"] * 3
    assert polls >= 5 and failed == [], failed
    assert all(set(env.backend_status(lb).values()) == {"UP"} for lb in LBS), "both servers back in rotation"

    new_ca = (store / "ca.crt").read_text()
    assert new_ca != old_ca and not (store / "rotation" / "kubernetes-ca").exists()
    for node, names in KUBECONFIGS_ON.items():
        assert env.lab.exec(node, ["cat", "/etc/kubernetes/pki/ca.crt"], check=True).stdout == new_ca, node
        assert {n: kubeconfig_cas(env, node, n) for n in names} == dict.fromkeys(names, new_ca), node
    for cp in ("cp-1", "cp-2"):
        for leaf in ("apiserver", "apiserver-kubelet-client"):
            ok = env.lab.exec(cp, ["openssl", "verify", "-CAfile", "/etc/kubernetes/pki/ca.crt", f"/etc/kubernetes/pki/{leaf}.crt"])
            assert ok.returncode == 0 and ": OK" in ok.stdout, ok.stdout + ok.stderr
        env.lab.exec(cp, ["tee", "/root/old-ca.crt"], input=old_ca, check=True)
        old = env.lab.exec(cp, ["openssl", "verify", "-CAfile", "/root/old-ca.crt", "/etc/kubernetes/pki/apiserver.crt"])
        assert old.returncode != 0, f"{cp}: the API server certificate still verifies against the old CA"
    ready = env.lab.exec("cp-1", ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "wait", "--for=condition=Ready",
                                  "nodes", "--all", "--timeout=60s"])
    assert ready.returncode == 0, ready.stdout + ready.stderr
    # the local admin kubeconfig the rotation kept up to date works through the VIP (copied to the
    # worker again: the module's next test asks through it)
    env.lab.exec("worker-1", ["install", "-m", "0600", "/dev/stdin", ADMIN_ON_WORKER], input=env.admin_conf.read_text(),
                 check=True)
    nodes = env.kubectl_nodes()
    assert nodes.returncode == 0 and {line.split("/", 1)[1] for line in nodes.stdout.split()} == NODES, nodes.stderr
    check_clean_and_up_idle(env, started, seconds)
    violations = env.lab.exec("cp-1", ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "sim", "violations"],
                              check=True)
    print(f"simulator violations after the rotation: {violations.stdout.strip()}")


def test_node_remove_of_a_control_plane_takes_it_out_of_haproxy_first_and_the_vip_answers_throughout(env):
    """cp-2 leaves: both balancers' haproxy.cfg are rendered without it and reloaded before kubeadm
    reset stops its API server, so requests through the VIP keep being answered during the run."""
    from tests.integration.polling import while_polling

    res, polls, failed = while_polling(lambda: None if readyz_through_vip(env.vip) else "no answer",
                                       lambda: env.kf("node", "remove", "cp-2", "--yes"), 0.2)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:] + env.diagnose()
    print(f"during node remove: {polls - len(failed)} requests through the VIP answered, {len(failed)} failed")
    assert polls >= 5 and failed == []
    run = max((env.dir / ".kubeforge").glob("*/runs/*-node-remove/report.json"), key=lambda p: p.stat().st_mtime)
    phases = [s["phase"] for s in json.loads(run.read_text())["steps"] if s["status"] == "done"]
    assert phases.index("UpdateEndpoint") < phases.index("ResetNodes")
    for lb in LBS:
        assert "cp-2" not in env.lab.exec(lb, ["cat", "/etc/haproxy/haproxy.cfg"], check=True).stdout
        assert set(env.backend_status(lb)) == {"cp-1"}
    res = env.kubectl_nodes()
    assert res.returncode == 0, res.stderr
    assert {line.split("/", 1)[1] for line in res.stdout.split()} == NODES - {"cp-2"}
    assert env.lab.exec("cp-2", ["systemctl", "is-active", "kubelet"]).stdout.strip() != "active"
    assert len(env.vip_holders()) == 1

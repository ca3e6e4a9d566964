"""`kubeforge up` and `kubeforge reset` end to end on the lab: real SSH, systemd, apt from the lab's
mirror, a real 3-member TLS etcd; kubeadm/kubelet/kubectl are the simulator (tests/sim).

The tests of this module run in order on one lab: bare machines -> up -> converged re-run -> a new
worker -> reset + rejoin -> a machine lost mid-run + --resume -> Ctrl-C + --resume. A dry run first
proves it changes nothing on any machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.lab.inventory import SIM_CNI_MANIFEST

pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]

ROLES = {"etcd": 3, "control-plane": 2, "worker": 3}
ADDED = "worker-3"  # left out of the inventory until the test that adds it
PERSISTENT = ("worker-2",)  # the machine powered off mid-run keeps its disk, like a real server
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
CNI = SIM_CNI_MANIFEST  # the lab's stand-in CNI (tests/lab/inventory.py)
# What a dry run must not change: kubeforge's files, the services it manages, its lock.
# Of a running cluster (whose etcd and kubelet write all the time): configuration and units.
CONFIGS = r"""find /etc/kubeforge /etc/kubernetes /etc/apt /etc/etcd /etc/containerd -xdev -type f -exec sha256sum {} + 2>/dev/null | LC_ALL=C sort
for u in etcd kubelet containerd; do echo "$u $(systemctl is-active $u) $(systemctl is-enabled $u 2>&1)"; done
"""
SNAPSHOT = r"""for d in /etc /var/lib/etcd /var/lib/kubelet /var/lib/kubeforge /opt/cni; do
  [ -e "$d" ] && find "$d" -xdev \( -type f -o -type l \) -printf '%p %m %s\n' 2>/dev/null
done | LC_ALL=C sort
""" + CONFIGS + "cat /proc/swaps | tail -n +2\n"


@dataclass
class Env:
    lab: object
    dir: Path
    inventory: Path
    full: dict  # the inventory with every machine

    def kf(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kubeforge", *args, "-i", str(self.inventory)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.dir, check=False)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "kubeforge", *args, "-i", str(self.inventory)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.dir)

    @property
    def state_dir(self) -> Path:
        return self.dir / ".kubeforge" / self.full["metadata"]["name"]

    def sim(self, what: str):
        res = self.lab.exec("cp-1", [*KUBECTL, "sim", what], check=True)
        return json.loads(res.stdout)

    def ready_nodes(self) -> set[str]:
        return {n for n, v in self.sim("state")["nodes"].items() if v.get("ready")}

    def write_inventory(self, hosts_left_out=()) -> None:
        doc = json.loads(json.dumps(self.full))
        doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] not in hosts_left_out]
        yaml = YAML()
        with self.inventory.open("w") as f:
            yaml.dump(doc, f)

    def latest_run(self) -> Path:
        return max((p for p in (self.state_dir / "runs").iterdir() if (p / "journal.jsonl").exists()),
                   key=lambda p: (p / "journal.jsonl").stat().st_mtime)


def journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "journal.jsonl").read_text().splitlines() if line.strip()]


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.fixture(scope="module")
def env(lab_factory, tmp_path_factory) -> Env:
    lab = lab_factory(ROLES, persistent=PERSISTENT)
    d = tmp_path_factory.mktemp("up-lab")
    src = lab.write_inventory(d / "lab.yaml")
    full = YAML(typ="safe").load(src.read_text())
    full["spec"]["network"]["cni"] = {"name": "kubesim-cni", "manifest": "cni.yaml"}
    (d / "cni.yaml").write_text(CNI)
    e = Env(lab, d, d / "inventory.yaml", full)
    e.write_inventory(hosts_left_out=(ADDED,))
    return e


def snapshot(lab, script: str = SNAPSHOT) -> dict[str, str]:
    return {name: lab.exec(name, ["bash", "-c", script], check=True).stdout for name in lab.machines}


def wait_for_step(env: Env, proc: subprocess.Popen, started: float, host: str, phase: str, timeout: float = 120) -> None:
    """Until this run's journal shows a step of ``phase`` done on ``host``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        runs = [p for p in (env.state_dir / "runs").glob("*-up") if (p / "journal.jsonl").exists()
                and (p / "journal.jsonl").stat().st_mtime > started]
        for run in runs:
            if any(r.get("type") == "step" and r["host"] == host and r["phase"] == phase and r["status"] == "done"
                   for r in journal(run)):
                return
        time.sleep(0.05)
    out = proc.communicate(timeout=60)[0] if proc.poll() is not None else ""
    pytest.fail(f"no {phase} step of {host} was done in time; the run said:\n{out[-3000:]}")


def assert_nothing_repeated(run_dir: Path) -> None:
    """Steps completed before a resume are never run (nor journaled) again after it."""
    records = journal(run_dir)
    cut = max(i for i, r in enumerate(records) if r["type"] == "resume")
    before = {r["step"] for r in records[:cut] if r["type"] == "step" and r["status"] in ("done", "unchanged")}
    after = [r["step"] for r in records[cut:] if r["type"] == "step"]
    assert before, "the interrupted attempt completed nothing: the test proves nothing"
    assert not before & set(after)


def test_a_dry_run_of_up_on_bare_machines_changes_nothing_on_any_machine(env):
    before = snapshot(env.lab)
    res = env.kf("up", "--dry-run")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "would run" in res.stdout + res.stderr or "dry run" in res.stdout
    assert snapshot(env.lab) == before
    assert not (env.state_dir / "admin.conf").exists()


def test_up_takes_bare_machines_to_every_node_ready_with_real_etcd_files_and_units(env):
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.ready_nodes() == {"cp-1", "cp-2", "worker-1", "worker-2"}
    assert env.sim("violations") == []
    members = [h["address"] for h in env.full["spec"]["hosts"] if "etcd" in h["roles"]]
    health = env.lab.exec("etcd-1", [
        "env", "ETCDCTL_API=3", "etcdctl", "--cacert=/etc/etcd/pki/ca.crt", "--cert=/etc/etcd/pki/healthcheck-client.crt",
        "--key=/etc/etcd/pki/healthcheck-client.key", "--endpoints=" + ",".join(f"https://{a}:2379" for a in members),
        "endpoint", "health"])
    assert health.returncode == 0, health
    assert (health.stdout + health.stderr).count("is healthy") == 3, health
    for name in ("cp-1", "worker-1"):
        held = env.lab.exec(name, ["dpkg", "--get-selections", "kubeadm", "kubelet", "kubectl"], check=True).stdout
        assert held.split().count("hold") == 3
        version = env.lab.exec(name, ["dpkg-query", "-W", "-f=${Version}", "kubelet"], check=True).stdout
        assert version.startswith(env.full["spec"]["kubernetesVersion"] + "-")
        units = env.lab.exec(name, ["systemctl", "is-active", "containerd", "kubelet"]).stdout.split()
        assert units == ["active", "active"]
        assert env.lab.exec(name, ["test", "-f", "/etc/kubeforge/applied.json"]).returncode == 0
        mode = env.lab.exec(name, ["stat", "-c", "%a", "/etc/kubeforge/kubeadm-init.yaml" if name == "cp-1"
                                   else "/etc/kubeforge/kubeadm-join.yaml"], check=True).stdout.strip()
        assert mode == "600"
    assert env.lab.exec("etcd-1", ["systemctl", "is-active", "etcd"]).stdout.strip() == "active"
    admin = env.state_dir / "admin.conf"
    assert admin.exists() and (admin.stat().st_mode & 0o777) == 0o600


# Where the token and certificate key may be at rest on a host: the 0600 kubeadm config files that
# hand them to kubeadm, and etcd's data (a bootstrap token is a Secret in the cluster; the simulator
# keeps the cluster's objects in etcd as well).
SECRETS_ALLOWED_IN = ("/etc/kubeforge/kubeadm-init.yaml", "/etc/kubeforge/kubeadm-join.yaml", "/var/lib/etcd/")


def test_after_up_no_file_on_any_machine_holds_the_token_or_certificate_key(env):
    secrets = json.loads((env.state_dir / "pki" / "secrets.json").read_text())
    patterns = f"{secrets['bootstrapToken']}\n{secrets['certificateKey']}\n"
    found = {}
    for name in env.lab.machines:
        if not env.lab.running(name):
            continue
        # the whole filesystem but the kernel's views (sockets and FIFOs skipped); patterns on stdin,
        # never in argv. grep exits 2 when some file vanished or could not be read (-s keeps quiet
        # about those); the kubeadm config found on each node shows the scan did read the disk.
        res = env.lab.exec(name, ["grep", "-rlsF", "-D", "skip", "-f", "-", "--exclude-dir=proc", "--exclude-dir=sys",
                                  "--exclude-dir=dev", "/"], input=patterns, timeout=600)
        listed = res.stdout.split()
        if name.startswith(("cp-", "worker-")) and name != ADDED:  # a node of the inventory
            assert any(p.startswith("/etc/kubeforge/kubeadm-") for p in listed), (name, res.returncode, listed)
        hits = [p for p in listed if not p.startswith(SECRETS_ALLOWED_IN)]
        if hits:
            found[name] = hits
    assert found == {}
    logs = env.lab.exec("cp-1", ["cat", "/var/log/kubeforge/kubeadm-init.log"], check=True).stdout
    assert "--token <token>" in logs  # the log is still there for diagnosis, masked


def test_a_second_up_changes_nothing_and_says_so(env):
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "nothing to do" in res.stdout
    rep = report(env.latest_run())
    assert rep["outcome"] == "succeeded"
    assert [s for s in rep["steps"] if s["status"] == "done"] == []


def test_a_kubeadm_value_wrong_for_the_real_tool_is_refused_by_kubeforge_before_any_host_and_by_the_simulator(env):
    """A service range kubeadm refuses (more than 20 host bits): kubeforge refuses the inventory itself,
    exit 3 naming the field, no host touched. The same value reaching kubeadm — cp-1's rendered init
    configuration edited on the host — is refused by the simulator's kubeadm as the real one words it
    (tests/sim/README.md "config values"), and so are flags mixed with --config."""
    doc = json.loads(json.dumps(env.full))
    doc["spec"]["hosts"] = [h for h in doc["spec"]["hosts"] if h["name"] != ADDED]
    doc["spec"]["network"]["serviceCIDR"] = "10.0.0.0/8"
    bad = env.dir / "wide-services.yaml"
    with bad.open("w") as f:
        YAML().dump(doc, f)
    configs = snapshot(env.lab, CONFIGS)
    runs_before = set((env.state_dir / "runs").iterdir())
    res = subprocess.run([sys.executable, "-m", "kubeforge", "up", "--yes", "-i", str(bad)], capture_output=True,
                         text=True, timeout=300, cwd=env.dir, check=False)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "wide-services.yaml:" in res.stderr and "serviceCIDR" in res.stderr and "10.0.0.0/8 is too large" in res.stderr
    assert "Traceback" not in res.stderr
    assert set((env.state_dir / "runs").iterdir()) == runs_before
    assert snapshot(env.lab, CONFIGS) == configs

    from kubeforge.render.kubeadm import INIT_PATH

    edit = (f"set -e\nsed 's#serviceSubnet: .*#serviceSubnet: 10.0.0.0/8#' {INIT_PATH} > /root/wide.yaml\n"
            "grep -q 'serviceSubnet: 10.0.0.0/8' /root/wide.yaml\n")
    env.lab.exec("cp-1", ["bash", "-c", edit], check=True)
    try:
        res = env.lab.exec("cp-1", ["kubeadm", "config", "validate", "--config", "/root/wide.yaml"])
        assert res.returncode == 1 and 'networking.serviceSubnet: Invalid value: "10.0.0.0/8": specified service ' \
            "subnet is too large; for 32-bit addresses, the mask must be >= 12" in res.stderr, res.stdout + res.stderr
        # the rendered file as it is passes; with a flag beside --config, init is refused before preflight
        assert env.lab.exec("cp-1", ["kubeadm", "config", "validate", "--config", INIT_PATH]).returncode == 0
        res = env.lab.exec("cp-1", ["kubeadm", "init", "--config", INIT_PATH, "--kubernetes-version", "v1.34.2"])
        assert res.returncode == 1 and "can not mix '--config' with arguments [kubernetes-version]" in res.stderr, res.stderr
    finally:
        env.lab.exec("cp-1", ["rm", "-f", "/root/wide.yaml"], check=True)
    assert env.sim("violations") == []


def test_up_refuses_a_taint_the_cni_does_not_tolerate_naming_node_taint_and_manifest_and_changes_nothing(env):
    # a real node whose taints the CNI's DaemonSet does not tolerate never gets its network plugin and
    # stays NotReady (tests/sim/README.md "Ready"); kubeforge refuses it at planning, exit 3
    narrow = CNI.replace("        - operator: Exists\n", "        - {key: node-role.kubernetes.io/control-plane, "
                                                         "operator: Exists, effect: NoSchedule}\n")
    assert narrow != CNI
    (env.dir / "cni-narrow.yaml").write_text(narrow)
    doc = json.loads(json.dumps(env.full))
    doc["spec"]["network"]["cni"]["manifest"] = "cni-narrow.yaml"
    worker = next(h for h in doc["spec"]["hosts"] if h["name"] == "worker-2")
    worker["taints"] = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    runs_before = set((env.state_dir / "runs").iterdir())
    try:
        with env.inventory.open("w") as f:
            YAML().dump({**doc, "spec": {**doc["spec"], "hosts": [h for h in doc["spec"]["hosts"]
                                                                  if h["name"] != ADDED]}}, f)
        res = env.kf("up", "--yes")
    finally:
        env.write_inventory(hosts_left_out=(ADDED,))
    assert res.returncode == 3, res.stdout + res.stderr
    assert ("node worker-2" in res.stderr and "taint dedicated=db:NoSchedule not tolerated by DaemonSet "
            "kube-system/kubesim-cni" in res.stderr and "cni-narrow.yaml" in res.stderr), res.stderr
    assert "Traceback" not in res.stderr
    new = set((env.state_dir / "runs").iterdir()) - runs_before
    assert not any((p / "journal.jsonl").exists() for p in new)  # refused before any step was journaled
    assert not env.sim("state")["nodes"]["worker-2"].get("taints")  # the taint was never applied
    assert env.ready_nodes() >= {"cp-1", "cp-2", "worker-1", "worker-2"}


def test_adding_a_worker_to_the_inventory_joins_only_that_worker(env):
    env.write_inventory()
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    rep = report(env.latest_run())
    changed = {s["host"] for s in rep["steps"] if s["status"] == "done"}
    # cp-1 only waits for Ready and labels; every other host is left alone
    assert changed <= {ADDED, "cp-1"} and ADDED in changed
    assert {s["phase"] for s in rep["steps"] if s["host"] == "cp-1"} <= {"WaitNodesReady", "LabelAndTaintNodes"}
    assert ADDED in env.ready_nodes()
    assert env.sim("violations") == []


def test_reset_of_one_worker_then_up_rejoins_it(env):
    res = env.kf("reset", "--hosts", "worker-1", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "worker-1" not in env.sim("state")["nodes"]
    assert env.lab.exec("worker-1", ["test", "-e", "/etc/kubeforge"]).returncode != 0
    assert env.lab.exec("worker-1", ["systemctl", "is-active", "kubelet"]).stdout.strip() != "active"
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "worker-1" in env.ready_nodes()


def test_a_stopped_containerd_turns_its_node_not_ready_and_up_brings_it_back(env):
    # the kubelet needs a live CRI socket (tests/sim/README.md "kubelet: CRI socket")
    env.lab.exec("worker-1", ["sudo", "systemctl", "stop", "containerd"], check=True)
    deadline = time.monotonic() + 60
    while "worker-1" in env.ready_nodes():
        assert time.monotonic() < deadline, "worker-1 stayed Ready without containerd"
        time.sleep(1)
    node = env.sim("state")["nodes"]["worker-1"]
    assert (node.get("runtimeProblem") or "").startswith("container runtime is down"), node
    res = env.kf("up", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert env.lab.exec("worker-1", ["systemctl", "is-active", "containerd"]).stdout.strip() == "active"
    assert "worker-1" in env.ready_nodes()
    assert env.sim("violations") == []


def wait_not_ready(env: Env, node: str, why: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while node in env.ready_nodes():
        assert time.monotonic() < deadline, f"{node} stayed Ready with {why}"
        time.sleep(0.5)


def wait_ready(env: Env, node: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while node not in env.ready_nodes():
        assert time.monotonic() < deadline, f"{node} did not turn Ready again"
        time.sleep(0.5)


CONTAINERD_CONFIG = "/etc/containerd/config.toml"


def test_a_cgroup_driver_changed_on_a_node_turns_it_not_ready_and_up_puts_the_rendered_config_back(env):
    """An operator's configuration management sets containerd to the cgroupfs driver and restarts it:
    the kubelet (systemd, as kubeadm writes it) cannot run a pod sandbox there (tests/sim/README.md
    "kubelet: cgroup driver"). `up` says why the node is NotReady and that the file was changed, writes
    the rendered config back, drained, and restarts containerd, whose running config is still the
    other one even though the file's content matches what kubeforge last started it on."""
    node = "worker-1"
    rendered = env.lab.exec(node, ["cat", CONTAINERD_CONFIG], check=True).stdout
    assert "SystemdCgroup = true" in rendered

    def invocation() -> str:
        return env.lab.exec(node, ["systemctl", "show", "-p", "InvocationID", "--value", "containerd"], check=True).stdout

    try:
        env.lab.exec(node, ["bash", "-c", f"sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' {CONTAINERD_CONFIG} "
                                          "&& systemctl restart containerd"], check=True)
        theirs = invocation()
        deadline = time.monotonic() + 60  # NotReady first while containerd restarts, then for the driver
        while "cgroup driver" not in (env.sim("state")["nodes"][node].get("runtimeProblem") or "") \
                or node in env.ready_nodes():
            assert time.monotonic() < deadline, env.sim("state")["nodes"][node]
            time.sleep(0.5)
        facts = env.kf("facts", "--hosts", node)
        assert facts.returncode == 0, facts.stdout + facts.stderr
        assert f"[{node}] changed on the host since kubeforge wrote them: {CONTAINERD_CONFIG}" in facts.stdout + facts.stderr
        res = env.kf("up", "--yes")
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert f"[{node}] node NotReady: failed to create pod sandbox" in out and 'cgroup driver "systemd"' in out
        assert f"[{node}] {CONTAINERD_CONFIG} was changed on the host since kubeforge wrote it" in out
        assert env.lab.exec(node, ["cat", CONTAINERD_CONFIG], check=True).stdout == rendered
        assert invocation() != theirs  # restarted on the rendered file
        steps = [s for s in report(env.latest_run())["steps"] if s["phase"] == "RestartWorkerRuntimes"]
        assert steps and all(s["status"] == "done" for s in steps), steps  # drained, written, restarted, gated
        assert {s["host"] for s in steps} == {node, "cp-1"}  # kubectl's steps (drain, gate, uncordon) on cp-1
        assert any(s["host"] == node and s["title"].startswith(f"Write {CONTAINERD_CONFIG}") for s in steps)
        assert node in env.ready_nodes() and not env.sim("state")["nodes"][node].get("unschedulable")
        assert env.sim("violations") == []
    finally:
        if env.lab.exec(node, ["cat", CONTAINERD_CONFIG]).stdout != rendered:
            env.lab.exec(node, ["bash", "-c", f"cat > {CONTAINERD_CONFIG} && systemctl restart containerd"], input=rendered)
        env.lab.exec("cp-1", [*KUBECTL, "uncordon", node])


# A lab machine's /proc/swaps is the runner's, which has no swap, and a container may not turn swap on
# (nor should a test touch the runner's). This unit stands in for the /etc/fstab swap entry an operator
# added back: at every boot it lays a swaps file listing /swapfile over /proc/swaps, inside the machine
# only, before the kubelet starts. kubeforge's facts and the simulator's kubelet both read /proc/swaps.
SWAP_UNIT = "/etc/systemd/system/kubeforge-lab-swap.service"
SWAPS_FILE = "/var/lib/kubeforge-lab/swaps"
SWAPS = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/swapfile                               file\t\t1048572\t\t0\t\t-2\n"
SWAP_ON_AT_BOOT = f"""mkdir -p {SWAPS_FILE.rsplit("/", 1)[0]}
printf '{SWAPS}' > {SWAPS_FILE}
cat > {SWAP_UNIT} <<'UNIT'
[Unit]
Description=kubeforge lab: swap on at boot, as an /etc/fstab swap entry would turn it on
Before=kubelet.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount --bind {SWAPS_FILE} /proc/swaps
ExecStop=/bin/umount /proc/swaps
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable kubeforge-lab-swap.service
"""
SWAP_OFF_FOR_GOOD = f"""systemctl disable --now kubeforge-lab-swap.service 2>/dev/null || true
while mountpoint -q /proc/swaps 2>/dev/null || grep -q /swapfile /proc/swaps; do umount /proc/swaps || break; done
rm -f {SWAP_UNIT} {SWAPS_FILE}
systemctl daemon-reload
"""


def test_swap_back_on_after_a_reboot_fails_preflight_and_up_naming_host_and_device_until_it_is_off(env):
    """The kubelet refuses to start with swap on (tests/sim/README.md "kubelet: swap"), so the node is
    NotReady after its reboot. kubeforge leaves the decision to turn swap off to the operator, as kubeadm's
    preflight does (docs/architecture.md "Swap"): `preflight` and `up` fail (exit 4) naming the host and the
    device, and change nothing; once the operator has turned it off, the node comes back by itself."""
    node = "worker-2"  # persistent: it reboots
    try:
        env.lab.exec(node, ["bash", "-c", SWAP_ON_AT_BOOT], check=True)
        env.lab.reboot_machine(node)
        assert "/swapfile" in env.lab.exec(node, ["cat", "/proc/swaps"], check=True).stdout
        wait_not_ready(env, node, "swap on")
        kubelet = env.lab.exec(node, ["journalctl", "-u", "kubelet", "-b", "--no-pager", "-q"]).stdout
        assert "running with swap on is not supported" in kubelet

        pre = env.kf("preflight", "--hosts", node, "--no-probes", "-o", "json")
        assert pre.returncode == 4, pre.stdout + pre.stderr
        checks = json.loads(pre.stdout)["hosts"][node]["checks"]
        swap = next(c for c in checks if c["check"] == "swap")
        assert swap["status"] == "fail" and "/swapfile" in swap["message"], swap
        assert "kubeforge turned it off when it prepared this host" in swap["message"]

        before = snapshot_of(env, node)
        res = env.kf("up", "--yes")
        assert res.returncode == 4, res.stdout + res.stderr
        assert f"[{node}] swap: swap is on: /swapfile" in res.stderr and "nothing was changed" in res.stderr
        assert snapshot_of(env, node) == before
    finally:
        env.lab.exec(node, ["bash", "-c", SWAP_OFF_FOR_GOOD], check=True)
    assert "/swapfile" not in env.lab.exec(node, ["cat", "/proc/swaps"], check=True).stdout
    wait_ready(env, node)  # systemd starts the kubelet again, now that swap is off


def snapshot_of(env: Env, node: str) -> str:
    """The node's configuration files (not its units' states: a kubelet refusing swap flaps)."""
    return env.lab.exec(node, ["bash", "-c", CONFIGS.splitlines()[0]], check=True).stdout


def test_reset_refuses_a_subset_that_would_break_etcd_quorum_and_changes_nothing(env):
    res = env.kf("reset", "--hosts", "etcd-1,etcd-2", "--yes")
    assert res.returncode == 7
    assert "quorum" in res.stderr
    assert env.lab.exec("etcd-1", ["systemctl", "is-active", "etcd"]).stdout.strip() == "active"


def test_a_worker_lost_mid_up_fails_cleanly_and_resume_finishes_without_repeating_a_step(env):
    assert env.kf("reset", "--hosts", "worker-2", "--yes").returncode == 0
    started = time.time()
    proc = env.popen("up", "--yes")
    wait_for_step(env, proc, started, "worker-2", "PrepareHosts")
    env.lab.stop_machine("worker-2")
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 6, out
    run = env.latest_run()
    rep = report(run)
    assert rep["outcome"] == "failed"
    statuses = {s["status"] for s in rep["steps"] if s["host"] == "worker-2"}
    assert "failed" in statuses and "not reached" in statuses
    assert "failed [worker-2]" in out or "error: [worker-2]" in out
    env.lab.start_machine("worker-2")
    res = env.kf("up", "--yes", "--resume")
    assert res.returncode == 0, res.stdout + res.stderr
    assert_nothing_repeated(run)
    assert "worker-2" in env.ready_nodes()
    assert env.sim("violations") == []


def test_ctrl_c_mid_up_stops_cleanly_and_resume_finishes_without_repeating_a_step(env):
    assert env.kf("reset", "--hosts", "worker-1", "--yes").returncode == 0
    started = time.time()
    proc = env.popen("up", "--yes")
    wait_for_step(env, proc, started, "worker-1", "PrepareHosts")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 8, out
    assert "--resume" in out
    run = env.latest_run()
    assert report(run)["outcome"] == "interrupted"
    res = env.kf("up", "--yes", "--resume")
    assert res.returncode == 0, res.stdout + res.stderr
    assert_nothing_repeated(run)
    assert env.ready_nodes() == {"cp-1", "cp-2", "worker-1", "worker-2", ADDED}
    assert env.sim("violations") == []


def _shift_token_record(secrets_file: Path, hours: float) -> str:
    """Move kubeforge's record of when its bootstrap token was made ``hours`` into the past: to
    kubeforge, that much time has gone by. Returns the token (to check it changes)."""
    from datetime import datetime, timedelta

    doc = json.loads(secrets_file.read_text())
    created = datetime.fromisoformat(doc["bootstrapTokenCreated"]) - timedelta(hours=hours)
    doc["bootstrapTokenCreated"] = created.isoformat()
    secrets_file.write_text(json.dumps(doc))
    return doc["bootstrapToken"]


def test_an_up_resumed_a_day_later_creates_the_expired_token_and_uploads_the_certificates_again(env):
    """cp-2 and the added worker are reset; the `up` that joins them again is interrupted (Ctrl-C) just
    after it created a bootstrap token, before any join. Then 25 h go by:
    the simulator's cluster clock moves on (tests/sim/README.md "Environment knobs") and so does
    kubeforge's record of its token. Both leases have expired in the cluster (token 24 h, kubeadm-certs
    2 h), so the resume must create a new token and upload the certificates again, though the
    interrupted attempt journaled both as done, before cp-2 and the worker join."""
    from tests.terminal import foreground_sigint

    secrets_file = env.state_dir / "pki" / "secrets.json"
    for name in ("cp-2", ADDED):
        res = env.kf("reset", "--hosts", name, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
    old_token = _shift_token_record(secrets_file, 25)  # the first attempt already finds it expired
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "kubeforge", "up", "--yes", "-i", str(env.inventory)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=env.dir,
                            preexec_fn=foreground_sigint)
    deadline = time.monotonic() + 300
    run = None
    while time.monotonic() < deadline and proc.poll() is None and run is None:
        for r in (p for p in (env.state_dir / "runs").glob("*-up") if (p / "journal.jsonl").exists()
                  and (p / "journal.jsonl").stat().st_mtime > started):
            if any(x.get("type") == "step" and x["step"].endswith("cp-1/token-create") and x["status"] == "done"
                   for x in journal(r)):
                run = r
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert run is not None and proc.returncode == 8, out
    done = [r["step"] for r in journal(run) if r["type"] == "step" and r["status"] == "done"]
    assert any(s.endswith("cp-1/token-create") for s in done), done
    # the run finishes the step in flight and stops: the Ctrl-C comes once the token is created, while
    # the certificates' upload (its next step, a few hundred ms over SSH) runs, so no join has started.
    # (Striking after the upload instead raced cp-2's 0.5 s join, which then finished on the first
    # token and left no control plane to upload the certificates for.)
    for name in ("cp-2", ADDED):
        assert env.lab.exec(name, ["test", "-e", "/etc/kubernetes/kubelet.conf"]).returncode != 0, out
    first_token = json.loads(secrets_file.read_text())["bootstrapToken"]
    assert first_token != old_token

    env.lab.exec("cp-1", [*KUBECTL, "sim", "advance-clock", "25h"], check=True)
    try:
        _shift_token_record(secrets_file, 25)
        res = env.kf("up", "--yes", "--resume")
    finally:  # the module's later tests never run a day ahead (heartbeats, tokens, grace periods)
        env.lab.exec("cp-1", [*KUBECTL, "sim", "reset-clock"], check=True)
    assert env.sim("state")["clockOffset"] == 0.0
    assert res.returncode == 0, res.stdout + res.stderr
    records = journal(run)
    cut = max(i for i, r in enumerate(records) if r["type"] == "resume")
    again = [r["step"] for r in records[cut:] if r["type"] == "step" and r["status"] == "done"]
    assert any(s.endswith("cp-1/token-create") for s in again) and any(s.endswith("cp-1/upload-certs") for s in again)
    before = {r["step"] for r in records[:cut] if r["type"] == "step" and r["status"] in ("done", "unchanged")}
    assert not (before & set(again)) - {s for s in again if s.endswith(("/token-create", "/upload-certs"))}
    new_token = json.loads(secrets_file.read_text())["bootstrapToken"]
    assert new_token != first_token and (secrets_file.stat().st_mode & 0o777) == 0o600
    assert new_token not in res.stdout + res.stderr
    assert not [log for log in (env.state_dir / "runs").glob("*/kubeforge.log") if new_token in log.read_text()]
    assert {"cp-2", ADDED} <= env.ready_nodes()
    assert env.sim("violations") == []


# One replica per worker (the simulator spreads a Deployment's pods over the schedulable nodes) and
# a PodDisruptionBudget that allows none to go: draining any worker must wait for it.
SPREAD = """apiVersion: apps/v1
kind: Deployment
metadata: {name: spread, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      containers: [{name: app, image: example.invalid/app:1}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: spread, namespace: default}
spec:
  minAvailable: MIN
  selector: {matchLabels: {app: spread}}
"""


BARE_POD = f"""apiVersion: v1
kind: Pod
metadata: {{name: debug, namespace: default}}
spec:
  nodeName: {ADDED}
  terminationGracePeriodSeconds: 2
  containers: [{{name: debug, image: example.invalid/debug:1}}]
"""


def test_node_remove_of_a_worker_waits_for_its_pdb_then_drains_deletes_the_node_and_resets_the_host(env):
    """The inventory still lists the worker (kubeforge reaches it from there): a blocked drain fails
    at its timeout with the node uncordoned and nothing reset; once the budget allows, a bare pod on
    the node still refuses the drain (kubectl's rule without --force), naming the pod and
    --force-bare-pods, the node uncordoned; with the option, --resume drains it (the pods take their
    grace period), resets the machine and deletes the Node."""
    env.lab.exec("cp-1", [*KUBECTL, "apply", "-f", "-"], input=SPREAD.replace("MIN", "3"), check=True)
    assert any(p["node"] == ADDED for p in env.sim("state")["pods"].values() if p["ownerName"] == "spread")
    dry = env.kf("node", "remove", ADDED, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"Drain {ADDED}" in dry.stdout + dry.stderr and ADDED in env.ready_nodes()

    blocked = env.kf("node", "remove", ADDED, "--yes", "--drain-timeout", "3")
    assert blocked.returncode == 6, blocked.stdout + blocked.stderr
    node = env.sim("state")["nodes"][ADDED]
    assert not node.get("unschedulable")  # uncordoned again: the drain failed, its removal stops there
    assert env.lab.exec(ADDED, ["systemctl", "is-active", "kubelet"]).stdout.strip() == "active"
    assert env.lab.exec(ADDED, ["test", "-e", "/etc/kubeforge"]).returncode == 0

    # the budget allows one now, but a pod no controller manages is on the node: kubectl drain refuses
    # it before evicting anything, and kubeforge names it and its option, the node uncordoned again
    env.lab.exec("cp-1", [*KUBECTL, "apply", "-f", "-"], input=SPREAD.replace("MIN", "2") + "---\n" + BARE_POD,
                 check=True)
    on_node = sorted(k for k, p in env.sim("state")["pods"].items() if p["node"] == ADDED)
    assert "default/debug" in on_node
    bare = env.kf("node", "remove", ADDED, "--yes", "--resume")
    out = bare.stdout + bare.stderr
    assert bare.returncode == 6, out
    assert f"kubeforge: {ADDED} runs pods no controller manages (default/debug)" in out and "--force-bare-pods" in out
    assert not env.sim("state")["nodes"][ADDED].get("unschedulable")
    assert sorted(k for k, p in env.sim("state")["pods"].items() if p["node"] == ADDED) == on_node  # nothing evicted
    assert env.lab.exec(ADDED, ["systemctl", "is-active", "kubelet"]).stdout.strip() == "active"

    res = env.kf("node", "remove", ADDED, "--yes", "--resume", "--force-bare-pods")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "delete it from" in res.stdout
    state = env.sim("state")
    assert ADDED not in state["nodes"]
    assert not [p for p in state["pods"].values() if p["node"] == ADDED]
    seen = [h["event"] for h in state["history"] if h.get("node") == ADDED and h["event"] in ("cordon", "reset")]
    assert seen[-2:] == ["cordon", "reset"]  # drained before kubeadm reset
    assert env.lab.exec(ADDED, ["test", "-e", "/etc/kubeforge"]).returncode != 0
    assert env.lab.exec(ADDED, ["systemctl", "is-active", "kubelet"]).stdout.strip() != "active"
    done = [s for s in report(env.latest_run())["steps"] if s["phase"] == "DrainNodes"]
    assert [s["status"] for s in done] == ["done"]
    assert done[0]["duration"] >= 2.0  # the evicted pods' grace period (2 s, the simulator's cap)
    assert "default/debug" not in state["pods"]  # deleted for good: nothing recreates a bare pod
    assert env.sim("violations") == []


KUBELET_SLOW = "/etc/systemd/system/kubelet.service.d/zz-test-slow-start.conf"


def test_an_up_stopped_while_kubeadm_init_ran_resumes_by_resetting_the_half_done_init(lab_factory, tmp_path):
    """kubeadm init has written admin.conf, kubelet.conf and the static Pod manifests and waits for the
    kubelet (a drop-in makes its start take minutes) when kubeforge gets SIGTERM and stops it. Once the
    kubelet runs, the API answers without kubeadm's configuration: a rerun of init alone would fail
    kubeadm's preflight (manifests and /var/lib/etcd left, ports taken), so the resume resets first."""
    from tests.terminal import foreground_sigint

    lab = lab_factory([("cp-1", ("control-plane", "etcd")), ("worker-1", ("worker",))])
    inv = lab.write_inventory(tmp_path / "inventory.yaml")
    kubectl = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]
    lab.exec("cp-1", ["bash", "-c", f"mkdir -p $(dirname {KUBELET_SLOW}) && printf '[Service]\\nExecStartPre=/bin/sleep 600\\n"
                                    f"TimeoutStartSec=900\\n' > {KUBELET_SLOW}"], check=True)

    def kf(*args):
        return subprocess.Popen([sys.executable, "-m", "kubeforge", *args, "-i", str(inv)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=foreground_sigint)

    proc = kf("up", "--yes")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if (lab.exec("cp-1", ["test", "-e", "/etc/kubernetes/manifests/kube-apiserver.yaml"]).returncode == 0
                and lab.exec("cp-1", ["systemctl", "is-active", "kubelet"]).stdout.strip() == "activating"):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 8 and "interrupted [cp-1] kubeadm init" in out, out

    # the operator lets the kubelet start: it runs the API server of the manifests kubeadm left
    lab.exec("cp-1", ["bash", "-c", f"rm -f {KUBELET_SLOW}; systemctl daemon-reload; systemctl restart --no-block kubelet"],
             check=True)
    deadline = time.monotonic() + 60
    while lab.exec("cp-1", [*kubectl, "get", "--raw", "/healthz"]).returncode != 0:
        assert time.monotonic() < deadline, "the API server of the left manifests never answered"
        time.sleep(0.5)
    assert lab.exec("cp-1", [*kubectl, "-n", "kube-system", "get", "configmap", "kubeadm-config"]).returncode != 0

    res = subprocess.run([sys.executable, "-m", "kubeforge", "up", "--yes", "--resume", "-i", str(inv)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "kubeadm reset: an earlier kubeadm init stopped before the cluster was initialised … done" \
        in res.stdout + res.stderr, res.stdout + res.stderr
    state = json.loads(lab.exec("cp-1", [*kubectl, "sim", "state"], check=True).stdout)
    assert {n for n, v in state["nodes"].items() if v.get("ready")} == {"cp-1", "worker-1"}
    assert json.loads(lab.exec("cp-1", [*kubectl, "sim", "violations"], check=True).stdout) == []

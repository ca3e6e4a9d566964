"""A lab: N systemd-nspawn machines on a private bridge, with SSH, known_hosts, an inventory and a
package mirror, booted and torn down from the runner (as root).

    lab = Lab(layout({"etcd": 3, "control-plane": 1}), index=1)
    lab.up()
    try:
        lab.exec("etcd-1", ["systemctl", "is-system-running"])
    finally:
        lab.down()

Everything the lab starts is recorded in ``/run/kubeforge-lab/lab<N>/state.json`` as it starts, so a
crashed or interrupted run is cleaned up by ``python -m tests.lab down --all``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import machine as mach
from tests.lab import mirror, network
from tests.lab.inventory import CNI_FILE, SIM_CNI_MANIFEST, render_inventory
from tests.lab.layout import MachineSpec
from tests.lab.paths import LabError, LabId, ssh_key_paths
from tests.lab.procs import Proc, terminate
from tests.lab.rootfs import LOGIN_USER, ensure_rootfs, ensure_ssh_key

# None: the oldest version the mirror's simulator packages offer (so upgrades have somewhere to go)
DEFAULT_KUBERNETES_VERSION: str | None = None
FALLBACK_KUBERNETES_VERSION = "1.33.5"

# Light machines (``Lab(light=True)``, for fleets of up to 100 on the runner's 2 cores): every service
# inside gets this environment (systemd's DefaultEnvironment). The simulated kubelet heartbeats every
# 5 s instead of every second, the API server stores a heartbeat at most every 10 s instead of 2, and a
# node counts as NotReady 40 s after its last stored one (the real kubelet renews its Lease every 10 s;
# kube-controller-manager's node-monitor-grace-period is 40 s, 50 s since 1.32). It was 20 s: a stored
# heartbeat is up to 15 s old already, so 5 s of delay made a node NotReady, and at 100 machines the
# converged re-run's facts scripts on 2 cores delayed dozens (docs/fleet.md, run 3).
# Each heartbeat is a TLS request and a read of the whole cluster document, and each store rewrites that
# document in etcd, so at the default rates their cost on the API servers and etcd grows as nodes x
# document size, i.e. with the square of the fleet.
LIGHT_ENVIRONMENT = {"KUBESIM_HEARTBEAT_SECONDS": "5", "KUBESIM_HEARTBEAT_WRITE_SECONDS": "10",
                     "KUBESIM_HEARTBEAT_GRACE_SECONDS": "40"}
LIGHT_DROPIN = "/etc/systemd/system.conf.d/kubeforge-lab-light.conf"


@dataclass
class Machine:
    spec: MachineSpec
    index: int  # 1-based; the address is .10+index
    address: str
    unit: str  # nspawn's machine name (names the host side of the veth)
    machine_id: str  # /etc/machine-id inside (nspawn --uuid)
    product_uuid: str  # what the machine's /sys/class/dmi/id/product_uuid would say
    proc: Proc | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Lab:
    specs: Sequence[MachineSpec]
    index: int = 0
    kubernetes_version: str | None = DEFAULT_KUBERNETES_VERSION
    endpoint_mode: str = "auto"
    with_mirror: bool = True
    # False: a site with no way out. The machines get no default route and an empty resolv.conf, and
    # open no connection to the runner (the lab mirror included); they answer SSH from it, and reach
    # each other. Packages and images then come only from what kubeforge pushes over SSH.
    egress: bool = True
    # True: light machines for a fleet (LIGHT_ENVIRONMENT above; disks on the runner's disk, kept across
    # stop/start like persistent ones); the default is the ordinary machine
    light: bool = False
    log: object = print
    # the process that tears this lab down (a pytest session); None for a lab booted by hand, which
    # lives until ``down`` and is no leftover while its machines run
    owner: Proc | None = None
    machines: dict[str, Machine] = field(default_factory=dict, init=False)
    mirror_proc: Proc | None = field(default=None, init=False)
    rootfs: Path | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.id = LabId(self.index)
        self._is_down = False
        for i, spec in enumerate(self.specs, start=1):
            self.machines[spec.name] = Machine(
                spec, i, self.id.address(i), self.id.machine_name(i), uuid.uuid4().hex, str(uuid.uuid4())
            )

    # --- where things are -------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.id.run_dir

    @property
    def known_hosts(self) -> Path:
        return self.run_dir / "known_hosts"

    @property
    def inventory_path(self) -> Path:
        return self.run_dir / "inventory.yaml"

    @property
    def key_path(self) -> Path:
        return ssh_key_paths()[0]

    @property
    def mirror_url(self) -> str:
        return f"http://{self.id.gateway}:{self.id.mirror_port}"

    def address(self, name: str) -> str:
        return self._machine(name).address

    def ssh_argv(self, name: str, *command: str) -> list[str]:
        """The real OpenSSH client, strict host-key checking against the lab's known_hosts."""
        return [
            "ssh", "-i", str(self.key_path), "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"{LOGIN_USER}@{self.address(name)}", *command,
        ]

    # --- lifecycle --------------------------------------------------------------------------
    def up(self, timeout: float = 180.0) -> Lab:
        started = time.monotonic()
        self._is_down = False
        if self.id.state_file.exists():
            teardown_state(json.loads(self.id.state_file.read_text()), log=self.log)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            ensure_ssh_key()
            mach.ensure_host_limits(log=self.log)
            self.rootfs = ensure_rootfs(log=self.log)
            self._save()
            network.create_bridge(self.id.bridge, self.id.gateway, self.id.network.prefixlen)
            self._save()
            if self.with_mirror:
                root = mirror.prepare(self.rootfs, self.run_dir / "mirror", log=self.log)
                if self.kubernetes_version is None:
                    self.kubernetes_version = (mirror.kube_versions(root) or [FALLBACK_KUBERNETES_VERSION])[0]
                self.mirror_proc = mirror.serve(root, self.id.gateway, self.id.mirror_port, self.run_dir / "mirror.log")
                self._save()
            mach.write_hosts_file(self.run_dir / "hosts", [(m.name, m.address) for m in self.machines.values()])
            for m in self.machines.values():
                self._boot(m)
            self._wait_for_ssh(list(self.machines), timeout)
            for m in self.machines.values():
                self._after_boot(m.name)
            self.reset_known_hosts()
            self.write_inventory()
        except BaseException:
            self.down()
            raise
        self.log(f"lab {self.id.name}: {len(self.machines)} machines up in {time.monotonic() - started:.1f}s")
        return self

    def down(self) -> None:
        """Stop everything; a second call does nothing (fixture finalizers and atexit both call it,
        and by then the slot may belong to another session's lab)."""
        if self._is_down:
            return
        teardown_state(self._state(), log=self.log)
        self._is_down = True

    def stop_machine(self, name: str) -> None:
        """Hard power-off: the machine's whole process tree is killed, nothing shuts down cleanly."""
        m = self._machine(name)
        mach.kill(m.proc)
        m.proc = None
        mach.unmount_overlay(self._mdir(name))
        mach.remove_cgroups(m.unit)
        self._save()

    def shutdown_machine(self, name: str, grace: float = 30.0) -> None:
        """Clean power-off: systemd inside stops its services first."""
        m = self._machine(name)
        terminate(m.proc, grace)
        m.proc = None
        mach.unmount_overlay(self._mdir(name))
        mach.remove_cgroups(m.unit)
        self._save()

    def start_machine(self, name: str, timeout: float = 120.0) -> None:
        """Boot a stopped machine again. A volatile machine comes back with a fresh disk and new host
        keys (known_hosts is rescanned); a persistent one keeps both."""
        self.start_machines([name], timeout)

    def start_machines(self, names: list[str], timeout: float = 120.0) -> None:
        """``start_machine`` for several at once: every one booted, then one wait for all their sshd
        and one rescan of the host keys (a restored seven-machine lab boots in parallel)."""
        ms = [self._machine(n) for n in names]
        for m in ms:
            if m.proc and m.proc.alive():
                raise LabError(f"{m.name} is already running")
        for m in ms:
            self._boot(m)
        self._wait_for_ssh(list(names), timeout)
        for n in names:
            self._after_boot(n)
        self.reset_known_hosts()

    def reboot_machine(self, name: str, timeout: float = 120.0) -> None:
        """``systemctl reboot`` inside a persistent machine, then wait for it to answer SSH again."""
        m = self._machine(name)
        if not m.spec.persistent:
            raise LabError(f"{name} has a volatile disk; only persistent machines reboot (use stop/start)")
        before = self.leader_pid(name)
        self.exec(name, ["systemctl", "reboot"], check=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.leader_pid(name) != before:
                    break
            except LabError:
                pass  # between the old container's exit and the new one's start
            if time.monotonic() > deadline or not self.running(name):
                raise LabError(f"{name} did not come back from reboot within {timeout:.0f}s; console {self._console(name)}")
            time.sleep(0.1)
        self._wait_for_ssh([name], max(1.0, deadline - time.monotonic()))
        self._after_boot(name)

    def running(self, name: str) -> bool:
        p = self._machine(name).proc
        return bool(p and p.alive())

    def reset_known_hosts(self) -> Path:
        """Rewrite known_hosts with the current host keys of every running machine."""
        addrs = [m.address for m in self.machines.values() if m.proc and m.proc.alive()]
        lines = network.scan_host_keys(addrs) if addrs else []
        tmp = self.known_hosts.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(self.known_hosts)
        return self.known_hosts

    def write_inventory(self, path: Path | None = None, **overrides) -> Path:
        text = render_inventory(
            cluster_name=overrides.get("cluster_name", self.id.name),
            machines=[(m.spec, m.address) for m in self.machines.values()],
            key_file=self.key_path,
            known_hosts=self.known_hosts,
            mirror_url=self.mirror_url,
            kubernetes_version=overrides.get("kubernetes_version", self.kubernetes_version or FALLBACK_KUBERNETES_VERSION),
            endpoint_mode=overrides.get("endpoint_mode", self.endpoint_mode),
            vip=self.id.vip,
        )
        path = path or self.inventory_path
        path.write_text(text)
        (path.parent / CNI_FILE).write_text(SIM_CNI_MANIFEST)  # the inventory names it, relative to itself
        return path

    # --- inside the machines (independent of kubeforge's own SSH code) -------------------------
    def leader_pid(self, name: str) -> int:
        m = self._machine(name)
        if not (m.proc and m.proc.alive()):
            raise LabError(f"{name} is not running")
        return mach.leader_pid(m.proc)

    def exec(self, name: str, argv: Sequence[str], *, input: str | bytes | None = None, timeout: float = 120.0,
             check: bool = False) -> subprocess.CompletedProcess:
        """Run argv as root inside the machine (all its namespaces), output captured as text."""
        return mach.nsenter(self.leader_pid(name), argv, input=input, timeout=timeout, check=check)

    def set_product_uuid(self, name: str, value: str) -> None:
        """What /sys/class/dmi/id/product_uuid says inside the machine, now and after restarts."""
        m = self._machine(name)
        m.product_uuid = value
        self._save()
        if self.running(name):
            mach.apply_product_uuid(self.leader_pid(name), value)

    # --- internals --------------------------------------------------------------------------
    def _machine(self, name: str) -> Machine:
        try:
            return self.machines[name]
        except KeyError:
            raise LabError(f"no machine {name!r} in lab {self.id.name} (machines: {', '.join(self.machines)})") from None

    def _mdir(self, name: str) -> Path:
        return self.run_dir / "machines" / name

    def _console(self, name: str) -> Path:
        return self._mdir(name) / "console.log"

    def _wait_for_ssh(self, names: list[str], timeout: float) -> None:
        try:
            network.wait_for_ssh({n: self.address(n) for n in names}, timeout, {n: self._console(n) for n in names})
        except LabError as e:
            # what systemd inside says, before teardown takes the evidence away
            notes = []
            for n in names:
                if network.ssh_banner(self.address(n)) is None and self.running(n):
                    try:
                        res = self.exec(n, ["sh", "-c", "systemctl is-system-running; systemctl --failed --no-legend; "
                                                        "systemctl status ssh kubeforge-lab-hostkeys --no-pager -n 5"], timeout=20)
                        notes.append(f"--- {n}:\n{res.stdout[-1500:]}")
                    except (LabError, subprocess.TimeoutExpired) as inner:
                        notes.append(f"--- {n}: {inner}")
            raise LabError(str(e) + ("\n" + "\n".join(notes) if notes else "")) from None

    def _after_boot(self, name: str) -> None:
        """What every boot of a machine gets once its sshd answers (each boot has a new netns)."""
        pid = self.leader_pid(name)
        mach.apply_product_uuid(pid, self._machine(name).product_uuid)
        if not self.egress:
            network.cut_egress(pid, self.id.gateway)

    def _boot(self, m: Machine) -> None:
        assert self.rootfs is not None
        m.proc = mach.boot(
            rootfs=self.rootfs, mdir=self._mdir(m.name), unit=m.unit, hostname=m.name, address=m.address,
            prefixlen=self.id.network.prefixlen, gateway=self.id.gateway, bridge=self.id.bridge,
            machine_id=m.machine_id, hosts_file=self.run_dir / "hosts",
            # a light machine's disk is an overlay on the runner's disk, not nspawn's tmpfs: 100 workers
            # hold ~200 MB each after `up` (containerd, the packages apt kept), 20 GB of RAM as tmpfs
            persistent=m.spec.persistent or self.light, egress=self.egress, binds=self._light_binds(m),
        )
        self._save()

    def _light_binds(self, m: Machine) -> list[tuple[Path, str]]:
        if not self.light:
            return []
        env = " ".join(f"{k}={v}" for k, v in LIGHT_ENVIRONMENT.items())
        dropin = self._mdir(m.name) / "light.conf"
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text(f"[Manager]\nDefaultEnvironment={env}\n")
        return [(dropin, LIGHT_DROPIN)]

    def _state(self) -> dict:
        return {
            "lab": self.id.name,
            "owner": self.owner.to_json() if self.owner else None,
            "index": self.index,
            "bridge": self.id.bridge,
            "rootfs": str(self.rootfs) if self.rootfs else None,
            "kubernetes_version": self.kubernetes_version,
            "endpoint_mode": self.endpoint_mode,
            "with_mirror": self.with_mirror,
            "egress": self.egress,
            "light": self.light,
            "mirror": self.mirror_proc.to_json() if self.mirror_proc else None,
            "machines": [
                {
                    "name": m.name, "roles": list(m.spec.roles), "persistent": m.spec.persistent,
                    "index": m.index, "address": m.address, "unit": m.unit, "machine_id": m.machine_id,
                    "product_uuid": m.product_uuid, "proc": m.proc.to_json() if m.proc else None,
                }
                for m in self.machines.values()
            ],
        }

    def _save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.id.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state(), indent=2))
        tmp.replace(self.id.state_file)

    @classmethod
    def attach(cls, index: int = 0, log=print) -> Lab:
        """The lab another process booted, from its state file."""
        state_file = LabId(index).state_file
        if not state_file.exists():
            raise LabError(f"no lab {LabId(index).name} on this runner ({state_file} missing); start one with: python -m tests.lab up")
        st = json.loads(state_file.read_text())
        specs = [MachineSpec(d["name"], tuple(d["roles"]), d["persistent"]) for d in st["machines"]]
        lab = cls(specs, index=index, kubernetes_version=st["kubernetes_version"], endpoint_mode=st["endpoint_mode"],
                  with_mirror=st["with_mirror"], egress=st.get("egress", True), light=st.get("light", False), log=log)
        lab.rootfs = Path(st["rootfs"]) if st["rootfs"] else None
        lab.mirror_proc = Proc.from_json(st["mirror"])
        lab.owner = Proc.from_json(st.get("owner"))
        for d in st["machines"]:
            m = lab.machines[d["name"]]
            m.machine_id, m.product_uuid, m.proc = d["machine_id"], d["product_uuid"], Proc.from_json(d["proc"])
        return lab


def teardown_state(state: dict, log=print, grace: float = 0.0) -> None:
    """Stop everything a state file records (only processes whose PID and start time still match),
    unmount overlays, delete the bridge and the run directory.

    The machines are powered off at once: what a machine wrote goes away with the run directory (a
    saved disk is a read-only layer, tests/lab/disks.py), so nothing inside needs to shut down
    cleanly, and a clean shutdown cost up to 9 s per lab. ``grace`` > 0 lets each container's systemd
    stop its services first, for that long."""
    lab_id = LabId(int(state["index"]))
    procs = [Proc.from_json(m.get("proc")) for m in state.get("machines", [])]
    live = [p for p in procs if p and p.alive()]
    if grace > 0:
        for p in live:  # all at once: each container's systemd shuts down in parallel
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        live = [p for p in live if not p.wait_gone(max(0.0, deadline - time.monotonic()))]
    for p in live:  # every init killed first, then each nspawn waited for
        try:
            os.kill(mach.leader_pid(p), signal.SIGKILL)
        except (LabError, ProcessLookupError):
            pass
    for p in live:
        mach.kill(p)
    terminate(Proc.from_json(state.get("mirror")), 5.0)
    for m in state.get("machines", []):
        mach.unmount_overlay(lab_id.run_dir / "machines" / m["name"])
        mach.remove_cgroups(m["unit"])
    network.delete_bridge(state.get("bridge") or lab_id.bridge)
    shutil.rmtree(lab_id.run_dir, ignore_errors=True)

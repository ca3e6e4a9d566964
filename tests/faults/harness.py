"""One lab, its saved states, and running one case: a real kubeforge subprocess, a fault sent at a
step boundary seen in its journal, the continuation, and the checks.

kubeforge knows nothing of this: it is started as an operator starts it, and watched only through
the files it writes (its journal and report) and the machines themselves.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML

from tests.faults import journals, pki
from tests.faults.etcdwire import Client, ClientCerts, QuorumWatcher, Writer
from tests.faults.points import Point
from tests.faults.workflows import ETCD_FROM, RESTORE_BACKUPS, SHAPES, WORKFLOWS, Noop, Shape, Workflow
from tests.lab import claims, disks
from tests.lab.lab import Lab
from tests.lab.layout import layout
from tests.lab.procs import Proc, start_time

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 900.0  # one kubeforge run; a hung run is killed and the case fails
FAULTED_TIMEOUT = 300.0  # the run that took the fault must end by itself within this
CLUSTER_LOCK = "/var/lib/kubeforge/lock"

# What "the same end state" means on a machine: packages, unit state, and every file kubeforge
# writes for etcd, by sha256 (the PKI by what must hold of it: tests/faults/pki.py). The data dir is
# not compared (its bytes differ run to run).
FINGERPRINT = r"""
dpkg-query -W -f='${Package} ${Version} ${Status}\n' etcd-server etcd-client 2>/dev/null | sort
echo "enabled $(systemctl is-enabled etcd 2>/dev/null)"
echo "active $(systemctl is-active etcd 2>/dev/null)"
test -e /usr/sbin/policy-rc.d && echo "policy-rc.d present"
for f in /etc/etcd/etcd.env /etc/systemd/system/etcd.service /etc/default/etcd; do
  [ -f "$f" ] && sha256sum "$f"
done
ls /usr/local/bin 2>/dev/null | grep etcd
dpkg --audit 2>/dev/null | head -3
true
"""

# ... and on a Kubernetes machine (shape k8s): its packages, holds and units, the runtime files a
# minor changes, and which files kubeforge recorded as applied (their hashes are `plan up`'s to check:
# a converged cluster plans zero steps)
K8S_FINGERPRINT = r"""
dpkg-query -W -f='${Package} ${Version} ${Status}\n' kubeadm kubelet kubectl containerd haproxy keepalived 2>/dev/null | sort
echo "held $(apt-mark showhold 2>/dev/null | sort | tr '\n' ' ')"
for u in kubelet containerd haproxy keepalived; do
  echo "$u $(systemctl is-enabled $u 2>/dev/null) $(systemctl is-active $u 2>/dev/null)"
done
for f in /etc/containerd/config.toml /etc/crictl.yaml; do [ -f "$f" ] && sha256sum "$f"; done
[ -f /etc/kubeforge/applied.json ] && grep -o '"/[^"]*"' /etc/kubeforge/applied.json | sort -u | tr '\n' ' '
true
"""
KUBECTL = ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]

# what the uninterrupted `certs rotate-ca` must end with (FaultLab.rotation_end); the cases must then
# end as it did
ROTATION_END = {
    "members trust the store's CA alone": (True,), "the store's CA is not the start state's": (True,),
    "no rotation left in the store": (True,), "etcd-1 API server's etcd CA": (True, "not set up"),
    "a client of the start state's CA is served": (False,), "a client of the store's CA is served": (True,),
}
# `etcd restore`'s start state: these keys are in the backup, the marker is written after it
BACKUP_KEYS = [f"/kf/faults/backup/{i:02d}" for i in range(20)]
AFTER_BACKUP = "/kf/faults/after-backup"
RESTORE_END = {"every key of the backup is back": (True,), "the key written after the backup is gone": (True,)}


def kubeforge_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kubeforge", *args]


def kf(*args: str, timeout: float = RUN_TIMEOUT) -> tuple[subprocess.CompletedProcess, int]:
    """Run kubeforge to the end: its result and its pid (which names its records in a journal)."""
    with subprocess.Popen(kubeforge_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=REPO) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


@dataclass
class Outcome:
    point: Point
    seconds: float = 0.0
    converged: bool = False
    quorum_losses: list[float] = field(default_factory=list)
    lost_writes: int = 0
    repeated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what happened that is not a failure
    faulted_exit: int | None = None
    resumed_exit: int | None = None
    acked: int = 0
    report: dict[str, int] = field(default_factory=dict)  # the faulted run's report: status -> steps
    stages: dict[str, float] = field(default_factory=dict)  # where the case's seconds went, in order

    def line(self) -> str:
        state = "converged" if self.converged else "NOT converged"
        q = f", quorum lost {len(self.quorum_losses)}x ({', '.join(f'{g:.1f}s' for g in self.quorum_losses)})" if self.quorum_losses else ""
        lw = f", {self.lost_writes} lost writes" if self.lost_writes else ""
        r = f", repeated {len(self.repeated)}: {', '.join(self.repeated[:3])}" if self.repeated else ""
        rep = " ".join(f"{k}={v}" for k, v in sorted(self.report.items()))
        return (f"{self.point.name}: {state} in {self.seconds:.0f}s (exit {self.faulted_exit} then {self.resumed_exit}; "
                f"report {rep or 'none'}; {self.acked} writes acked){q}{lw}{r}"
                + (f"\n    seconds: {', '.join(f'{k} {v:.0f}' for k, v in self.stages.items())}" if self.stages else "")
                + "".join(f"\n    - {p}" for p in self.problems) + "".join(f"\n    note: {n}" for n in self.notes))


class StageClock:
    """Calling it with a name records the seconds since the previous call (or its creation)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into, self.last = into, time.monotonic()

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.into[name] = self.into.get(name, 0.0) + now - self.last
        self.last = now


@dataclass
class Reference:
    steps: int
    hosts: list[str]  # the host of each step record, in the order the uninterrupted run wrote them
    phases: list[str]  # the phase of each (the first part of its id)
    seconds: float
    fingerprint: dict
    always_run: set[str]

    def phase_ends(self) -> list[int]:
        """The boundaries after which the next step belongs to another phase."""
        return [i for i in range(1, len(self.phases)) if self.phases[i] != self.phases[i - 1]]


class Observers:
    """The quorum watcher and the writer of one case. From bare machines they start once the
    cluster first serves (its certificates exist only then). Under a CA rotation they start with a
    client of the old CA and add one of the new CA as soon as the store holds it: the members'
    server leaves change CA in phase 2, and the old CA's client is refused after phase 3."""

    def __init__(self, flab: FaultLab, wf: Workflow) -> None:
        self.flab, self.addresses = flab, flab.addresses(wf.watch)
        self.watcher: QuorumWatcher | None = None
        self.writer: Writer | None = None
        self.certs: ClientCerts | None = None
        self.new_ca: ClientCerts | None = None
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []
        self.rotates_ca = wf.rotates_ca

    def start(self, late: bool) -> None:
        if not late:
            self._begin()
        else:
            self._spawn(self._when_serving)
        if self.rotates_ca:
            self._spawn(self._follow_ca)

    def _spawn(self, target) -> None:
        t = threading.Thread(target=target, daemon=True)
        t.start()
        self.threads.append(t)

    def _begin(self) -> None:
        self.certs = self.flab.certs()
        self.watcher = QuorumWatcher(self.addresses, self.certs)
        self.writer = Writer(self.addresses, self.certs, tag=f"{time.time_ns()}")
        self.watcher.start()
        self.writer.start()

    def _when_serving(self) -> None:
        while not self.done.wait(0.5):
            try:
                certs = self.flab.certs()
                probe = Client(self.addresses[0], certs, timeout=1.0)
                try:
                    probe.read_linearizable("/kf/faults/probe")
                finally:
                    probe.close()
            except (OSError, RuntimeError, ValueError, subprocess.SubprocessError):
                continue
            self._begin()
            return

    def _follow_ca(self) -> None:
        while not self.done.wait(0.1):
            if self.watcher is None or self.writer is None:
                continue
            certs = pki.new_ca_client(self.flab.store_pki(), self.flab.lab.run_dir / "faults-client-new-ca")
            if certs is None:
                continue
            self.new_ca = certs
            self.watcher.also_with(certs)
            self.writer.also_with(certs)
            return

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(30)
        for t in (self.writer, self.watcher):
            if t:
                t.stop()

    def lost(self) -> list[str] | None:
        """The writer's acknowledged keys no member has, read with the new CA's client when there is one."""
        if self.writer is None:
            return None
        for certs in (self.new_ca, self.certs):
            if certs is not None:
                lost = self.writer.lost(self.addresses, certs)
                if lost is not None:
                    return lost
        return None


class FaultLab:
    """One lab shape's machines (the five etcd machines, or the Kubernetes lab), the operator's
    directory (inventories + .kubeforge state), saved states."""

    def __init__(self, log=print, shape: Shape = SHAPES["etcd"]) -> None:
        self.log = log
        self.shape = shape
        self.index, self.claim_fd = claims.claim()
        # owned by this process: if it dies without tearing down, `python -m tests.lab down --all` knows
        self.lab = Lab(layout(list(shape.machines), persistent=shape.names), index=self.index, log=lambda *_: None,
                       kubernetes_version=shape.kubernetes_version, endpoint_mode=shape.endpoint_mode,
                       owner=Proc(os.getpid(), start_time(os.getpid()) or ""))
        self.references: dict[str, Reference] = {}
        self.started: list[subprocess.Popen] = []  # kubeforge runs, killed on teardown if still running
        self.current: str | None = None  # the saved state the machines are in, untouched since (or None)
        self.case_dir: Path | None = None  # the case being run (its logs)

    # --- lifecycle ----------------------------------------------------------------------------
    def up(self) -> FaultLab:
        t = time.monotonic()
        self.lab.up()
        self.work = self.lab.run_dir / "operator"
        self.work.mkdir(mode=0o700, exist_ok=True)
        for name, hosts, kube, without in self.shape.inventories:
            self._inventory(self.work / f"{name}.yaml", list(hosts), kube, without)
        self.save("bare")
        self.log(f"lab {self.lab.id.name} ({self.shape.name}): {len(self.shape.machines)} machines up and saved "
                 f"as 'bare' in {time.monotonic() - t:.0f}s")
        return self

    def down(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        try:
            self.lab.down()
        finally:
            claims.release(self.claim_fd)

    def _inventory(self, path: Path, hosts: list[str], kubernetes_version: str | None = None,
                   without: tuple[str, ...] = ()) -> None:
        yaml = YAML()
        doc = shaped_inventory(yaml.load(self.lab.inventory_path.read_text()), hosts, kubernetes_version, without)
        with path.open("w") as f:
            yaml.dump(doc, f)
        cni = self.lab.inventory_path.parent / "cni.yaml"
        if cni.exists():
            shutil.copy(cni, path.parent / cni.name)

    @property
    def state_dir(self) -> Path:
        return self.work / ".kubeforge"

    def store_pki(self) -> Path:
        found = sorted(self.state_dir.glob("*/pki"))
        return found[0] if found else self.state_dir / "none" / "pki"

    def runs_dir(self) -> Path:
        found = sorted(self.state_dir.glob("*/runs"))
        return found[0] if found else self.state_dir / "none" / "runs"

    def inventory(self, wf: Workflow, name: str | None = None) -> str:
        return str(self.work / f"{name or wf.inventory}.yaml")

    # --- saved states: the machines' disks and the operator's state dir, together --------------
    def save(self, name: str) -> None:
        disks.save(self.lab, name)
        self.current = name  # saved cleanly and booted again: exactly that state
        dest = self.lab.run_dir / "saved-state" / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.state_dir.exists():
            shutil.copytree(self.state_dir, dest, symlinks=True)
        else:
            dest.mkdir()

    def restore(self, name: str) -> None:
        self.current = None
        disks.restore(self.lab, name)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        src = self.lab.run_dir / "saved-state" / name
        if any(src.iterdir()):
            shutil.copytree(src, self.state_dir, symlinks=True)
        self.current = name

    # --- looking at the cluster from outside ---------------------------------------------------
    def certs(self) -> ClientCerts:
        return ClientCerts.fetch(self.lab, self.shape.etcd[0], self.lab.run_dir / "faults-client")

    def addresses(self, names) -> list[str]:
        return [self.lab.address(n) for n in names]

    def wait_serving(self, names, timeout: float = 120.0) -> None:
        """Until every one of ``names`` answers a linearizable read (after a restore's boot)."""
        certs = self.certs()
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for n in list(pending):
                c = Client(self.lab.address(n), certs, timeout=2.0)
                try:
                    c.read_linearizable("/kf/faults/probe")
                    pending.remove(n)
                except OSError:
                    pass
                finally:
                    c.close()
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"etcd on {', '.join(pending)} not serving {timeout:.0f}s after the restore")
            if pending:
                time.sleep(0.5)

    def wait_started(self, wf: Workflow, timeout: float = 120.0) -> None:
        """After a saved state was booted: etcd serving, and on the Kubernetes lab every node Ready
        again (the saved heartbeats are old: a run started at once would find nodes NotReady)."""
        self.wait_serving(wf.watch, timeout)
        deadline = time.monotonic() + timeout
        # the nodes the start state has (up-add's cp-3 and worker-3 join only in its run)
        names = next((w.nodes for w in WORKFLOWS.values() if w.saves == wf.baseline), ())
        while names:
            nodes = self.kube_end(names)["nodes"]
            if all(isinstance(v, dict) and v["ready"] for v in nodes.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes not Ready {timeout:.0f}s after the restore: {nodes}")
            time.sleep(1.0)

    def wait_etcd_after_boot(self, name: str, timeout: float = 120.0) -> None:
        """After a power cycle: until an enabled etcd is active again (or is not enabled), as an
        operator would wait for the machine to be back before continuing."""
        script = ("[ \"$(systemctl is-enabled etcd 2>/dev/null)\" = enabled ] || exit 0; "
                  "[ \"$(systemctl is-active etcd 2>/dev/null)\" = active ]")
        deadline = time.monotonic() + timeout
        while self.lab.exec(name, ["bash", "-c", script]).returncode != 0 and time.monotonic() < deadline:
            time.sleep(1.0)

    def machine_fingerprint(self, n: str) -> tuple[dict, str | None]:
        """One machine's part of the end state, and its CA's sha256 (None: no CA)."""
        out = {n: self.lab.exec(n, ["bash", "-c", FINGERPRINT]).stdout}
        if self.shape.name == "k8s":
            out[f"{n} kubernetes"] = self.lab.exec(n, ["bash", "-c", K8S_FINGERPRINT]).stdout
        out[f"{n} pki"], ca = pki.describe(self.lab, n)
        return out, ca

    def fingerprint(self, wf: Workflow) -> dict:
        out: dict = {}
        cas = set()
        # every machine read at once: a few dozen commands inside them, one after another, were
        # seconds of every case's checks
        with ThreadPoolExecutor(max_workers=len(self.shape.names)) as ex:
            for part, ca in ex.map(self.machine_fingerprint, self.shape.names):
                out.update(part)
                if ca:
                    cas.add(ca)
        out["one CA on every machine"] = len(cas) <= 1
        if wf.kube_version:
            out.update(self.kube_end(wf.nodes))
        versions, members = {}, None
        try:
            certs = self.certs()
        except RuntimeError as e:  # an install that never got as far as the PKI
            out["versions"], out["members"] = {n: f"no client certificates: {e}" for n in wf.members}, None
            return out
        for n in wf.members:
            c = Client(self.lab.address(n), certs, timeout=5.0)
            try:
                versions[n] = c.version().get("etcdserver")
                members = members or c.members()
            except OSError as e:
                versions[n] = f"unreachable: {e}"
            finally:
                c.close()
        out["versions"], out["members"] = versions, members
        if wf.rotates_ca:
            out.update(self.rotation_end(wf, cas))
        if wf.restores_backup:
            out.update(self.restore_end(wf))
        return out

    def rotation_end(self, wf: Workflow, cas: set[str]) -> dict:
        """After `certs rotate-ca --ca etcd`: every member and API server trusts the store's CA
        alone, which is not the start state's; the store's rotation is gone; real etcd refuses a
        client of the old CA and serves one of the new."""
        store = self.store_pki()
        now, before = pki.store_ca_sha256(store), pki.store_ca_sha256(self.saved_store_pki(wf.baseline))
        out: dict = {"members trust the store's CA alone": cas == {now},
                     "the store's CA is not the start state's": now is not None and now != before,
                     "no rotation left in the store": not (store / pki.ROTATION_CA.parent).exists()}
        for cp in ("etcd-1",):  # the inventory's control plane: an API server's etcd CA, where one is set up
            res = self.lab.exec(cp, ["bash", "-c", f"test -f {pki.APISERVER_ETCD_CA} && sha256sum {pki.APISERVER_ETCD_CA}"])
            out[f"{cp} API server's etcd CA"] = (res.stdout.split()[0] == now) if res.returncode == 0 else "not set up"
        old = pki.issue_client(self.saved_store_pki(wf.baseline) / "etcd",
                               (store / "etcd" / "ca.crt").read_bytes(), self.lab.run_dir / "faults-client-old-ca")
        new = pki.issue_client(store / "etcd", (store / "etcd" / "ca.crt").read_bytes(),
                               self.lab.run_dir / "faults-client-store-ca")
        for name, certs in (("a client of the start state's CA is served", old),
                            ("a client of the store's CA is served", new)):
            c = Client(self.lab.address(wf.watch[0]), certs, timeout=5.0) if certs else None
            try:
                if c is None:
                    raise OSError("no CA to issue it from")
                c.put("/kf/faults/rotation-client", "x")
                out[name] = True
            except (OSError, http.client.HTTPException, ssl.SSLError):
                out[name] = False
            finally:
                if c:
                    c.close()
        return out

    def saved_store_pki(self, name: str) -> Path:
        found = sorted((self.lab.run_dir / "saved-state" / name).glob("*/pki"))
        return found[0] if found else self.lab.run_dir / "saved-state" / name / "none" / "pki"

    def etcd_panics(self, since: str) -> dict[str, str]:
        """Members whose etcd logged a Go panic since ``since`` (``@<epoch>``): the first panic line."""
        out = {}
        for n in self.shape.etcd:
            res = self.lab.exec(n, ["journalctl", "-u", "etcd", "--since", since, "--no-pager", "-o", "cat"])
            hits = [line for line in res.stdout.splitlines() if line.startswith("panic:")]
            if hits:
                out[n] = f"{hits[0][:120]} ({len(hits)}x)"
        return out

    def noop(self, wf: Workflow, check: Noop | None = None) -> tuple[subprocess.CompletedProcess, list[dict]]:
        """A command that must find nothing to do (the workflow's own by default), and the journal
        records it wrote (if any)."""
        check = check or wf.noops[0]
        res, pid = kf(*check.args, "-i", self.inventory(wf, check.inventory), *(("--yes",) if check.yes else ()))
        return res, journals.attempt(self.runs_dir(), pid)[1]

    def noops_failing(self, wf: Workflow, log_to: Path | None = None) -> tuple[list[str], set[str]]:
        """Each of the workflow's nothing-to-do commands that did not say so, and the steps the
        first one (the workflow's own command) still reported done. ``log_to``: a directory their
        output goes to (noop-1.log, ...). They run side by side, each its own kubeforge process, as
        two operators' commands could (none changes anything, and `plan up` takes no lock): the
        checks cost one converged re-run, not one after another."""
        failing, always = [], set()
        with ThreadPoolExecutor(max_workers=len(wf.noops)) as ex:
            results = list(ex.map(lambda check: self.noop(wf, check), wf.noops))
        for i, (check, (res, recs)) in enumerate(zip(wf.noops, results, strict=True)):
            if log_to is not None:
                log_to.mkdir(parents=True, exist_ok=True)
                (log_to / f"noop-{i + 1}.log").write_text(f"$ kubeforge {' '.join(check.args)}\n{res.stdout}{res.stderr}")
            if i == 0:
                always = journals.done_ids(recs)
            text = " ".join((res.stdout + res.stderr).split())
            if res.returncode != check.exit or check.says not in text:
                inv = f" (inventory {check.inventory})" if check.inventory else ""
                failing.append(f"`{' '.join(check.args)}`{inv} did not find nothing to do (exit {res.returncode}): {text[-300:]}")
        return failing, always

    def kube_end(self, names: tuple[str, ...]) -> dict:
        """Every node as the simulator's API server sees it (Ready, kubelet version, cordoned), and
        the violations of kubeadm's and the kubelet's rules it recorded."""
        out: dict = {}
        for what in ("state", "violations"):
            res = self.lab.exec(self.shape.first, [*KUBECTL, "sim", what], timeout=60)
            try:
                out[what] = json.loads(res.stdout)
            except json.JSONDecodeError:
                out[what] = f"no answer (exit {res.returncode}): {' '.join(res.stderr.split())[-200:]}"
        state = out["state"]
        if not isinstance(state, dict):  # the API did not answer: that is what every node shows
            return {"nodes": {n: state for n in names}, "simulator violations": out["violations"]}
        nodes = state.get("nodes", {})
        return {"nodes": {n: {"ready": bool(nodes[n].get("ready")), "version": nodes[n].get("kubeletVersion"),
                              "cordoned": bool(nodes[n].get("unschedulable"))} if n in nodes else "not registered"
                          for n in names},
                "simulator violations": out["violations"]}

    def cluster_lock_held(self) -> bool:
        return self.lab.exec(self.shape.first, ["test", "-e", CLUSTER_LOCK]).returncode == 0

    # --- faults -----------------------------------------------------------------------------------
    def cut_ssh(self, host: str) -> int:
        """Kill the sshd processes serving connections on ``host`` (children of the listener): what
        a dropped link looks like to the client, mid-command. The number of sessions cut."""
        script = ('l=$(cat /run/sshd.pid 2>/dev/null || pgrep -o -x sshd); kids=$(pgrep -P "$l"); '
                  '[ -n "$kids" ] && kill -KILL $kids; echo $kids | wc -w')
        res = self.lab.exec(host, ["bash", "-c", script])
        return int((res.stdout.strip() or "0").split()[-1])

    # --- running ------------------------------------------------------------------------------------
    def start(self, wf: Workflow, extra: tuple[str, ...], log_to: Path) -> tuple[subprocess.Popen, object]:
        self.current = None
        log_to.parent.mkdir(parents=True, exist_ok=True)
        out = log_to.open("w")
        proc = subprocess.Popen(kubeforge_argv(*wf.command(self.inventory(wf), str(self.work)), *extra), stdout=out,
                                stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True)
        self.started = [p for p in self.started if p.poll() is None] + [proc]
        return proc, out

    def reference(self, wf: Workflow, case_dir: Path, points: bool = True) -> Reference:
        """The uninterrupted run from the workflow's baseline: its step count, time, end state, and
        which steps a converged re-run still reports done. Saves ``wf.saves`` when it has one.
        ``points=False``: only a start state is wanted of it (no point of its own runs), so only
        what that state must be is checked -- the Kubernetes end -- not the full fingerprint, and
        the nothing-to-do commands are not run (``up`` from bare saves k8s133 for ``upgrade``)."""
        if wf.prepared_from and not disks.saved(self.lab, wf.baseline):
            self.prepare_backup(wf)
        if self.current != wf.baseline:  # a reference right after its start state was saved starts from it as it is
            self.restore(wf.baseline)
        if wf.baseline != "bare":
            self.wait_started(wf)
        t = time.monotonic()
        proc, out = self.start(wf, (), case_dir / "reference.log")
        rc = proc.wait(RUN_TIMEOUT)
        out.close()
        seconds = time.monotonic() - t
        if rc != 0:
            raise RuntimeError(f"{wf.name}: the uninterrupted run failed (exit {rc}); see {case_dir / 'reference.log'}")
        _, recs = journals.attempt(self.runs_dir(), proc.pid)
        if points:
            fp = self.fingerprint(wf)
            failing, always = self.noops_failing(wf, case_dir)
        else:
            fp, failing, always = self.kube_end(wf.nodes) if wf.kube_version else {}, [], set()
        for f in failing:
            self.log(f"warning: after the uninterrupted {wf.name}, {f}")
        ends = (ROTATION_END if wf.rotates_ca else {}) | (RESTORE_END if wf.restores_backup else {})
        wrong = {k: fp.get(k) for k, want in ends.items() if fp.get(k) not in want}
        if wf.kube_version:
            wrong |= {k: fp.get(k) for k, want in kube_end_wanted(wf).items() if fp.get(k) != want}
        if wrong:
            raise RuntimeError(f"{wf.name}: the uninterrupted run did not end as it must: {wrong}")
        if wf.saves:
            self.save(wf.saves)
        done = journals.steps(recs)
        ref = Reference(len(done), [r["host"] for r in done], [r["step"].split("/")[0] for r in done], seconds, fp, always)
        self.references[wf.name] = ref
        self.log(f"reference {wf.name}: {ref.steps} steps in {seconds:.0f}s"
                 + (f"; steps a converged re-run still does: {sorted(always)}" if always else ""))
        return ref

    def prepare_backup(self, wf: Workflow) -> None:
        """``wf.baseline`` made from ``wf.prepared_from``: the backup's keys written, one backup
        taken into the operator's restore-backups/, then a key written after it; saved."""
        t = time.monotonic()
        self.restore(wf.prepared_from)
        self.wait_serving(wf.watch)
        c = Client(self.lab.address(wf.watch[0]), self.certs(), timeout=5.0)
        try:
            for k in BACKUP_KEYS:
                c.put(k, "in the backup")
            backups = self.work / RESTORE_BACKUPS
            shutil.rmtree(backups, ignore_errors=True)
            res, _ = kf("etcd", "backup", "-i", self.inventory(wf), "--dir", str(backups))
            if res.returncode != 0:
                raise RuntimeError(f"{wf.name}: the backup of its start state failed (exit {res.returncode}): "
                                   f"{' '.join((res.stdout + res.stderr).split())[-400:]}")
            c.put(AFTER_BACKUP, "written after the backup")
        finally:
            c.close()
        self.save(wf.baseline)
        self.log(f"start state {wf.baseline}: {wf.prepared_from} + a backup and a key after it, in {time.monotonic() - t:.0f}s")

    def restore_end(self, wf: Workflow) -> dict:
        """After `etcd restore`: the backup's keys back, the key written after the backup gone."""
        out = {k: "no member answered" for k in RESTORE_END}
        certs = self.certs()
        for n in wf.watch:
            c = Client(self.lab.address(n), certs, timeout=5.0)
            try:
                out["every key of the backup is back"] = c.keys("/kf/faults/backup/") == set(BACKUP_KEYS)
                out["the key written after the backup is gone"] = not c.keys(AFTER_BACKUP)
                return out
            except OSError:
                continue
            finally:
                c.close()
        return out

    def case(self, wf: Workflow, point: Point, case_dir: Path) -> Outcome:
        o = Outcome(point)
        self.case_dir = case_dir
        t0 = time.monotonic()
        since = f"@{int(time.time()) - 1}"
        ref = self.references[wf.name]
        case_dir.mkdir(parents=True, exist_ok=True)
        stage = StageClock(o.stages)
        self.restore(wf.baseline)
        stage("restore")
        if wf.baseline != "bare":
            self.wait_started(wf)
            stage("ready")
        observers = Observers(self, wf)
        try:
            if wf.observed:
                observers.start(late=wf.baseline == "bare")
            proc, out = self.start(wf, (), case_dir / "faulted.log")
            host = self._wait_for_point(proc, point, o)
            if host is not None:
                host = changing(ref, point, host)
                self._strike(proc, point.kind, host, o)
            try:
                o.faulted_exit = proc.wait(FAULTED_TIMEOUT)
            except subprocess.TimeoutExpired:
                o.problems.append(f"kubeforge did not end within {FAULTED_TIMEOUT:.0f}s of the fault; killed")
                os.killpg(proc.pid, signal.SIGKILL)
                o.faulted_exit = proc.wait()
            out.close()
            stage("faulted")
            if point.kind == "power" and host is not None:
                self.lab.start_machine(victim(host, self.shape.first))
                self.wait_etcd_after_boot(victim(host, self.shape.first))
                stage("power back")
            first_journal, first = journals.attempt(self.runs_dir(), proc.pid)
            self._check_report(point, first_journal, o)
            if o.faulted_exit == 0:
                if host is None:
                    o.problems.append("the run ended before the point was reached")
                second: list[dict] = []
                o.resumed_exit = 0
            else:
                # a killed kubeforge cannot release the cluster lock: the operator is told to break it
                extra = wf.resume + (("--break-lock",) if point.kind == "sigkill" else ())
                proc2, out2 = self.start(wf, extra, case_dir / "resumed.log")
                try:
                    o.resumed_exit = proc2.wait(RUN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(proc2.pid, signal.SIGKILL)
                    o.resumed_exit = proc2.wait()
                    o.problems.append(f"the continuation did not end within {RUN_TIMEOUT:.0f}s; killed")
                out2.close()
                if (point.kind == "power" and o.resumed_exit == 7
                        and "--break-lock" in (case_dir / "resumed.log").read_text()):
                    # the machine holding the cluster lock lost power under the run, which could
                    # then not release it: the refusal names --break-lock, and the operator uses it
                    o.notes.append("the continuation was refused by the lock the faulted run could not release; "
                                   "continued with --break-lock as the refusal says")
                    proc2, out2 = self.start(wf, extra + ("--break-lock",), case_dir / "resumed.log")
                    o.resumed_exit = proc2.wait(RUN_TIMEOUT)
                    out2.close()
                _, second = journals.attempt(self.runs_dir(), proc2.pid)
                stage("resumed")
                if o.resumed_exit != 0:
                    o.problems.append(f"the continuation exited {o.resumed_exit}: {_tail(case_dir / 'resumed.log')}")
            time.sleep(1.0)  # a last second of watching and writing on the end state
        finally:
            observers.stop()
        stage("watch end")
        watcher, writer = observers.watcher, observers.writer
        if watcher:
            o.quorum_losses = watcher.losses()
        if writer and observers.certs:
            o.acked = len(writer.acked)
            lost = observers.lost()
            if lost is None:
                # not counted as lost: unreadable is not gone (the quorum loss is counted already)
                o.problems.append(f"no member answered the read of the writer's keys at the end: "
                                  f"{len(writer.acked)} acknowledged writes could not be checked")
            else:
                o.lost_writes = len(lost)
        o.repeated = journals.repeated(first, second, ref.always_run, journals.guarded_steps(self.runs_dir()))
        for member, line in self.etcd_panics(since).items():
            o.problems.append(f"etcd on {member} panicked: {line}")
        self._check_end(wf, ref, o)
        stage("checks")
        o.seconds = time.monotonic() - t0
        (case_dir / "outcome.txt").write_text(o.line() + "\n")
        return o

    def _wait_for_point(self, proc: subprocess.Popen, point: Point, o: Outcome) -> str | None:
        """Until the journal of ``proc`` shows the point's step completed; the host of that step, or
        None when the run ended first."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            _, recs = journals.attempt(self.runs_dir(), proc.pid)
            steps = journals.steps(recs)
            if point.after_step:
                hit = [s for s in steps if s["step"].endswith(point.after_step)]
                if hit:
                    return hit[0]["host"]
            elif len(steps) >= point.after:
                return steps[point.after - 1]["host"]
            if proc.poll() is not None:
                return None
            time.sleep(0.02)
        o.problems.append("the point was never reached")
        return None

    def _strike(self, proc: subprocess.Popen, kind: str, host: str, o: Outcome) -> None:
        machine = victim(host, self.shape.first)
        if kind == "sigint":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        elif kind == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)  # a closed terminal, a CI timeout, systemd stopping a job
        elif kind == "sigkill":
            os.kill(proc.pid, signal.SIGKILL)
        elif kind == "ssh-cut":
            if self.cut_ssh(machine) == 0:
                o.problems.append(f"no SSH session to cut on {machine}")
        elif kind == "power":
            self.lab.stop_machine(machine)
        else:
            raise ValueError(kind)

    def _check_report(self, point: Point, journal: Path | None, o: Outcome) -> None:
        """The faulted run's report names what was done, failed and never reached (a killed run
        leaves none: its journal is all there is)."""
        if point.kind == "sigkill" or o.faulted_exit == 0 or journal is None:
            return
        path = journal.parent / "report.json"
        if not path.exists():
            o.problems.append(f"the faulted run (exit {o.faulted_exit}) left no report.json")
            return
        report = json.loads(path.read_text())
        for s in report.get("steps", []):
            o.report[s["status"]] = o.report.get(s["status"], 0) + 1
        if point.kind in ("sigint", "sigterm") and o.faulted_exit != 8:
            o.problems.append(f"interrupted by {point.kind.upper()} but exited {o.faulted_exit} (8 is interrupted)")

    def _check_end(self, wf: Workflow, ref: Reference, o: Outcome) -> None:
        fp = self.fingerprint(wf)
        for key, want in ref.fingerprint.items():
            if fp.get(key) != want:
                o.problems.append(f"end state differs from the uninterrupted run on {key}: {_diff(want, fp.get(key))}")
        if o.resumed_exit != 0:
            o.problems.append(f"`{' '.join(wf.noop)}` afterwards: not tried, the continuation failed")
        else:
            o.problems += [f"afterwards {f}" for f in self.noops_failing(wf, self.case_dir)[0]]
        # after the commands that must find nothing to do, which are the operator's next runs: a
        # lock whose host lost power as the run ended is noted by that run and removed by the next
        # from the same state dir (kubeforge.execute.lock); any other lock left fails a noop first
        if self.cluster_lock_held():
            o.problems.append(f"the cluster lock {CLUSTER_LOCK} is still held on {self.shape.first}")
        o.converged = o.resumed_exit == 0 and not o.problems


def shaped_inventory(doc: dict, hosts: list[str], kubernetes_version: str | None = None,
                     without: tuple[str, ...] = ()) -> dict:
    """The lab's inventory ``doc`` with the etcd members ``hosts`` (another etcd host is left out,
    or loses the role if it is a control plane), and no host of ``without``."""
    kept = []
    for h in doc["spec"]["hosts"]:
        if h["name"] in without:
            continue
        if h["name"] in hosts or "etcd" not in h["roles"]:
            kept.append(h)
        elif "control-plane" in h["roles"]:
            h["roles"] = [r for r in h["roles"] if r != "etcd"]
            kept.append(h)
    doc["spec"]["hosts"] = kept
    doc["spec"]["etcd"]["version"] = ETCD_FROM
    if kubernetes_version:
        doc["spec"]["kubernetesVersion"] = kubernetes_version
    return doc


def kube_end_wanted(wf: Workflow) -> dict:
    """A Kubernetes workflow's end: every node Ready at its version, none cordoned, no violation."""
    return {"nodes": {n: {"ready": True, "version": f"v{wf.kube_version}", "cordoned": False} for n in wf.nodes},
            "simulator violations": []}


def changing(ref: Reference, point: Point, at_boundary: str) -> str:
    """The machine being changed at a boundary: the host of the next step of the uninterrupted run
    (the executor has just started it), else the host of the step that just completed."""
    if not point.after_step and point.after < len(ref.hosts) and ref.hosts[point.after] != "local":
        return ref.hosts[point.after]
    return at_boundary


def victim(host: str, first: str = "etcd-1") -> str:
    """The machine a fault of ssh-cut or power hits: the host of the step at the boundary (a step on
    the operator's machine talks to the first control plane, which holds the lock)."""
    return first if host == "local" else host


def _diff(want, got) -> str:
    if isinstance(want, (str, list)) and isinstance(got, (str, list)):
        a = set(want.splitlines() if isinstance(want, str) else want)
        b = set(got.splitlines() if isinstance(got, str) else got)
        return f"missing {sorted(a - b)[:4]}, extra {sorted(b - a)[:4]}"
    return f"wanted {want}, got {got}"


def _tail(path: Path, n: int = 400) -> str:
    try:
        return " ".join(path.read_text()[-n:].split())
    except OSError:
        return ""

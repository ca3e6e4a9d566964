"""The workflows the matrix interrupts, each as data: the saved disks it starts from, the command,
how it is continued after a fault, what its end state must be, and which command must then find
nothing to do.

One lab serves every etcd workflow: etcd-1 (the control plane the inventory needs, and a member),
etcd-2, etcd-3, and etcd-4 and etcd-5 which only ``etcd members`` adds and removes. All five have persistent
disks; the states the workflows start from are saved disks (tests/lab/disks.py):

    bare       nothing installed                       (saved right after boot)
    etcd34     etcd 3.4.23 on etcd-1..3, 50 keys       (the reference `etcd install` from bare)
    etcd34x5   etcd 3.4.23 on etcd-1..5                (the reference `etcd members` add from etcd34)

    etcd34b    etcd34 with a backup taken (20 keys under /kf/faults/backup/), then a key written after it
               (made once from etcd34, before `etcd restore`'s reference)

`certs rotate-ca --ca etcd` starts from etcd34 too: its quorum watcher and writer follow the CA
change (a client of the old CA from the start, one of the new CA as soon as the store holds it).

The Kubernetes workflows have a lab of their own (shape "k8s", the issue's: 2 control planes, 2
workers, an HA endpoint), as light as that allows -- lb-1 (haproxy + keepalived holding the
endpoint's VIP), cp-1 and cp-2, worker-1 and worker-2, with the external 3-member etcd on cp-1, cp-2
and worker-1 (no machine of its own: etcd's watcher and writer still see every restart and power
loss of those nodes); and cp-3 and worker-3, bare, which only `up` adding nodes joins (inventory
k8s-add). kubeadm, kubelet and kubectl are the simulator (tests/sim); etcd, haproxy, SSH and apt
are real. Its saved states:

    bare       nothing installed                       (saved right after boot)
    k8s133     the 4 nodes Ready at 1.33.5             (the reference `up` from bare)

`upgrade` (to 1.34.2), `reset` (the whole cluster) and `up-add` start from k8s133.
"""

from __future__ import annotations

from dataclasses import dataclass

THREE = ["etcd-1", "etcd-2", "etcd-3"]
FIVE = THREE + ["etcd-4", "etcd-5"]  # an etcd cluster has an odd member count: 3 -> 5 -> 3
LAB_MACHINES = [("etcd-1", ("control-plane", "etcd"))] + [(n, ("etcd",)) for n in FIVE[1:]]
ETCD_FROM = "3.4.23"
ETCD_TO = "3.5.16"
RESTORE_BACKUPS = "restore-backups"

# the Kubernetes lab (shape "k8s")
KUBE_FROM = "1.33.5"
KUBE_TO = "1.34.2"  # one minor: what `upgrade` is interrupted on
K8S_ETCD = ("cp-1", "cp-2", "worker-1")
K8S_NODES = ("cp-1", "cp-2", "worker-1", "worker-2")
K8S_ADDED = ("cp-3", "worker-3")  # joined by `up-add` alone; bare in every other workflow
K8S_MACHINES = [("lb-1", ("load-balancer",)), ("cp-1", ("control-plane", "etcd")), ("cp-2", ("control-plane", "etcd")),
                ("cp-3", ("control-plane",)), ("worker-1", ("worker", "etcd")), ("worker-2", ("worker",)),
                ("worker-3", ("worker",))]


@dataclass(frozen=True)
class Shape:
    """One lab the matrix boots: its machines (every one with a persistent disk, so states can be
    saved), the inventories its workflows use, and where the cluster lock lives."""
    name: str
    machines: tuple[tuple[str, tuple[str, ...]], ...]
    first: str  # the first control plane: the cluster lock, and the machine a step on the operator's machine talks to
    etcd: tuple[str, ...]  # machines that can run an etcd member: fingerprinted, searched for panics
    # inventory name -> (the etcd hosts it keeps, its kubernetesVersion or None for the lab's, hosts it leaves out)
    inventories: tuple[tuple[str, tuple[str, ...], str | None, tuple[str, ...]], ...]
    kubernetes_version: str | None = None  # the lab's (None: the oldest the mirror offers)
    endpoint_mode: str = "auto"

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.machines]


SHAPES: dict[str, Shape] = {s.name: s for s in [
    Shape("etcd", tuple(LAB_MACHINES), first="etcd-1", etcd=tuple(FIVE),
          inventories=(("etcd3", tuple(THREE), None, ()), ("etcd5", tuple(FIVE), None, ()))),
    Shape("k8s", tuple(K8S_MACHINES), first="cp-1", etcd=K8S_ETCD,
          inventories=(("k8s", K8S_ETCD, KUBE_FROM, K8S_ADDED), (f"k8s-{KUBE_TO}", K8S_ETCD, KUBE_TO, K8S_ADDED),
                       ("k8s-add", K8S_ETCD, KUBE_FROM, ())),
          kubernetes_version=KUBE_FROM, endpoint_mode="haproxy"),
]}


@dataclass(frozen=True)
class Noop:
    """A command that must find nothing to do once a workflow converged, and what it then says."""
    args: tuple[str, ...]
    says: str
    exit: int = 0
    inventory: str | None = None  # default: the workflow's
    yes: bool = True  # `plan up` takes no --yes  # under the operator's directory: the one backup `etcd restore` uses


@dataclass(frozen=True)
class Workflow:
    name: str
    baseline: str  # saved disks it starts from
    inventory: str  # "etcd3" or "etcd5"
    args: tuple[str, ...]  # after `kubeforge`; -i INVENTORY is added
    resume: tuple[str, ...]  # extra arguments of the run after a fault ("--resume" or nothing: a re-run)
    members: tuple[str, ...]  # the etcd members at the end
    version: str  # every member's etcd version at the end
    watch: tuple[str, ...]  # members the watcher and the writer use (they stay members throughout)
    noop: tuple[str, ...]  # the command that must find nothing to do afterwards
    noop_says: str  # ...and what it says (in stdout+stderr) when it does
    noop_exit: int = 0
    saves: str | None = None  # the reference run's end state is saved as this baseline
    rotates_ca: bool = False  # the etcd CA changes under the run: clients of both CAs, the new CA alone at the end
    prepared_from: str | None = None  # ``baseline`` is made once from these saved disks (a backup taken)
    # a quorum watcher and a writer throughout: not for a restore, which stops every member by design
    # and brings back the backup's keys, not the writes made since (its own checks: FaultLab.restore_end)
    observed: bool = True
    shape: str = "etcd"
    kube_version: str | None = None  # every one of ``nodes`` Ready at this version, none cordoned (shape k8s)
    nodes: tuple[str, ...] = ()
    restores_backup: bool = False  # `etcd restore`: its own end checks (the backup's keys back)
    also_noop: tuple[Noop, ...] = ()  # more commands that must find nothing to do

    @property
    def noops(self) -> list[Noop]:
        return [Noop(self.noop, self.noop_says, self.noop_exit), *self.also_noop]

    def command(self, inventory_path: str, work: str = "") -> list[str]:
        return [*(a.replace("{work}", work) for a in self.args), "-i", inventory_path, "--yes"]


WORKFLOWS: dict[str, Workflow] = {w.name: w for w in [
    Workflow(
        name="etcd-install", baseline="bare", inventory="etcd3", args=("etcd", "install"), resume=(),
        members=tuple(THREE), version=ETCD_FROM, watch=tuple(THREE),
        noop=("etcd", "install"), noop_says="nothing changed", saves="etcd34",
    ),
    Workflow(
        name="etcd-upgrade", baseline="etcd34", inventory="etcd3",
        args=("etcd", "upgrade", "--to", ETCD_TO, "--allow-older-patch"), resume=("--resume",),
        members=tuple(THREE), version=ETCD_TO, watch=tuple(THREE),
        noop=("etcd", "upgrade", "--to", ETCD_TO, "--allow-older-patch"), noop_says=f"already at {ETCD_TO}", noop_exit=7,
    ),
    Workflow(
        name="etcd-members-add", baseline="etcd34", inventory="etcd5", args=("etcd", "members"), resume=(),
        members=tuple(FIVE), version=ETCD_FROM, watch=tuple(THREE),
        noop=("etcd", "members"), noop_says="nothing to do", saves="etcd34x5",
    ),
    Workflow(
        name="etcd-members-remove", baseline="etcd34x5", inventory="etcd3", args=("etcd", "members"), resume=(),
        members=tuple(THREE), version=ETCD_FROM, watch=tuple(THREE),
        noop=("etcd", "members"), noop_says="nothing to do",
    ),
    # a re-run of rotate-ca after it ended would begin the next rotation: what must find nothing to
    # do is `etcd install` (the store's new CA and leaves are what every member has)
    Workflow(
        name="etcd-rotate-ca", baseline="etcd34", inventory="etcd3", args=("certs", "rotate-ca", "--ca", "etcd"),
        resume=("--resume",), members=tuple(THREE), version=ETCD_FROM, watch=tuple(THREE),
        noop=("etcd", "install"), noop_says="nothing changed", rotates_ca=True,
    ),
    # continued with --resume (a plain re-run is refused while a restore is unfinished): the same
    # backup and stamp, so what the journal has as done is not done again
    Workflow(
        name="etcd-restore", baseline="etcd34b", prepared_from="etcd34", inventory="etcd3",
        args=("etcd", "restore", "--from", "latest", "--dir", "{work}/" + RESTORE_BACKUPS), resume=("--resume",),
        members=tuple(THREE), version=ETCD_FROM, watch=tuple(THREE),
        noop=("etcd", "install"), noop_says="nothing changed", observed=False, restores_backup=True,
    ),
    # `up` from bare machines, continued with --resume (what an interrupted `up` tells the operator)
    Workflow(
        name="up", shape="k8s", baseline="bare", inventory="k8s", args=("up",), resume=("--resume",),
        members=K8S_ETCD, version=ETCD_FROM, watch=K8S_ETCD, kube_version=KUBE_FROM, nodes=K8S_NODES,
        noop=("up",), noop_says="nothing to do: the cluster has converged", saves="k8s133",
        also_noop=(Noop(("plan", "up"), "Plan up: 0 steps", yes=False),),
    ),
    # one minor, both control planes then the workers in batches of one; then `upgrade` to the same
    # version has nothing to do, and neither has `up` with the inventory at the new version
    Workflow(
        name="upgrade", shape="k8s", baseline="k8s133", inventory="k8s", args=("upgrade", "--to", KUBE_TO),
        resume=("--resume",), members=K8S_ETCD, version=ETCD_FROM, watch=K8S_ETCD, kube_version=KUBE_TO, nodes=K8S_NODES,
        noop=("upgrade", "--to", KUBE_TO), noop_says=f"nothing to do: every node already runs {KUBE_TO}",
        also_noop=(Noop(("plan", "up"), "Plan up: 0 steps", inventory=f"k8s-{KUBE_TO}", yes=False),),
    ),
    # the whole cluster; `reset` has no --resume: a plain re-run, whose steps all check before they
    # act (so a converged re-run reports each done again, and none counts as repeated). Without
    # watcher and writer: it stops etcd by design. Its end: kubelet, containerd, etcd, haproxy and
    # keepalived stopped and disabled, kubeforge's files gone, the packages still installed and held,
    # as after the uninterrupted reset
    Workflow(
        name="reset", shape="k8s", baseline="k8s133", inventory="k8s", args=("reset",), resume=(),
        members=(), version=ETCD_FROM, watch=K8S_ETCD, observed=False,
        noop=("reset",), noop_says="reset: succeeded",
    ),
    # a control plane (cp-3) and a worker (worker-3) added to the inventory of the converged cluster
    Workflow(
        name="up-add", shape="k8s", baseline="k8s133", inventory="k8s-add", args=("up",), resume=("--resume",),
        members=K8S_ETCD, version=ETCD_FROM, watch=K8S_ETCD, kube_version=KUBE_FROM, nodes=K8S_NODES + K8S_ADDED,
        noop=("up",), noop_says="nothing to do: the cluster has converged",
        also_noop=(Noop(("plan", "up"), "Plan up: 0 steps", yes=False),),
    ),
]}

# the order references must run in: a workflow's baseline is saved by an earlier one
ORDER = ["etcd-install", "etcd-upgrade", "etcd-members-add", "etcd-members-remove", "etcd-rotate-ca", "etcd-restore",
         "up", "upgrade", "reset", "up-add"]
# CI's seeded sample (tests/integration/test_faults_lab.py): one test per lab, each drawing one point
# of every workflow that lab serves (and the mixed-version case), in this order; the etcd four came
# first and their draw is what it always was (a workflow's draw never depends on later ones)
CI_WORKFLOWS = {shape: [w for w in ORDER if WORKFLOWS[w].shape == shape] for shape in SHAPES}
NOT_COVERED: list[str] = []

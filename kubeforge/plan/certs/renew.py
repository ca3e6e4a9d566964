"""The plan of ``kubeforge certs renew``: etcd members one at a time (leaf files from the store,
pushed, etcd restarted, the cluster healthy with one leader before the next member), then the
applied-config stamp so a later ``etcd install`` sees nothing to do.

What expires but is not renewed by this plan (kubeadm's certificates, CAs, the kubelet's) is a
warning phase at the top of the plan, so the operator sees it in the plan, the prompt and the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from kubeforge.model import Cluster, RenderedFile
from kubeforge.plan.certs.compare import HostReport
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.install import GATE_TIMEOUT_S, config_sha, stamp_file
from kubeforge.plan.etcd.upgrade import warning_phase
from kubeforge.plan.phase import PhasePlan, Plan
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from kubeforge.plan.strategy import rolling

WORKFLOW = "certs renew"
MEMBER_ITEMS = ("etcd-server", "etcd-peer")


@dataclass(frozen=True)
class RenewSelection:
    """What the renewal touches, decided from a HostReport: members whose etcd leaves are pushed
    again, and what expires that this version of kubeforge does not renew (with why)."""

    members: tuple[str, ...]
    not_renewed: tuple[str, ...]


def select(cluster: Cluster, report: HostReport, *, renew_all: bool = False,
           hosts: Sequence[str] | None = None) -> RenewSelection:
    wanted = set(hosts) if hosts is not None else None
    members: list[str] = []
    left: list[str] = []
    for m in cluster.etcd_members:
        if wanted is not None and m.name not in wanted:
            continue
        ours = [f for f in report.findings if f.cert.host == m.name and f.owner.kind == "store"]
        if renew_all and ours or any(f.expiring for f in ours):
            members.append(m.name)
    for f in report.expiring:
        if wanted is not None and f.cert.host not in wanted:
            continue
        if f.owner.kind == "store" and f.cert.host in members:
            continue
        why = {
            "ca": "a CA: only a CA rotation renews it (`certs rotate-ca`, not built yet)",
            "kubeadm": "kubeadm's: `kubeadm certs renew` is not run by this version of kubeforge",
            "kubelet": "the kubelet's: turn on kubelet client certificate rotation",
            "store": "re-issued in the store, but pushing it to a control plane is not built yet",
        }.get(f.owner.kind, "not a certificate kubeforge knows how to renew")
        left.append(f"{f.cert.host}: {f.cert.path} (until {f.cert.not_after:%Y-%m-%d}): {why}")
    return RenewSelection(tuple(members), tuple(left))


def member_lane(cluster: Cluster, host_name: str, pki_files: Sequence[RenderedFile],
                config_files: Sequence[RenderedFile]) -> list:
    """Put the member's etcd PKI files (unchanged ones are skipped by sha256), restart etcd, wait
    until every member is healthy under one leader, record the applied configuration."""
    members = cluster.etcd_members
    steps: list = [PutFileStep(host_name, f) for f in pki_files]
    steps.append(RunStep(host_name, cmd.systemctl("restart", "etcd", timeout=180),
                         "Restart etcd on its renewed certificates", key="restart-etcd"))
    steps.append(PutFileStep(host_name, stamp_file(config_sha([*pki_files, *config_files])),
                             title="Record the applied etcd configuration"))
    steps.append(GateStep(host_name, cmd.cluster_healthy(cluster, members), "Wait for etcd healthy",
                          what=f"etcd healthy on {len(members)} member{'s' if len(members) != 1 else ''} "
                               f"with one leader after {host_name} restarted",
                          timeout_s=GATE_TIMEOUT_S, interval_s=1.0, key=f"gate-{host_name}"))
    return steps


def renew_plan(cluster: Cluster, selection: RenewSelection, pki_files: Mapping[str, Sequence[RenderedFile]],
               config_files: Mapping[str, Sequence[RenderedFile]]) -> Plan:
    """``pki_files`` / ``config_files``: per selected member, its etcd PKI files from the (already
    renewed) store and its etcd.env + unit as in place (for the applied-config stamp)."""
    phases: list[PhasePlan] = []
    if selection.not_renewed:
        phases.append(warning_phase("expiring but not renewed by this run: " + "; ".join(selection.not_renewed),
                                    name="NotRenewed"))
    phases.append(PhasePlan.of(
        name="RenewEtcdMembers", title="Renew etcd member certificates (one member at a time)",
        strategy=rolling(),
        lanes=[(m, member_lane(cluster, m, pki_files[m], config_files[m])) for m in selection.members],
        reason_if_empty="no etcd member certificate to renew",
    ))
    return Plan(WORKFLOW, tuple(phases))

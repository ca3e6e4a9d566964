"""InitFirstControlPlane: `kubeadm init` on the first control plane with the rendered configuration,
once. On a cluster that already exists: a new bootstrap token when the local one expired, and the
control-plane certificates uploaded again (they live 2 h) when control planes are about to join.

kubeadm prints the token and the certificate key on stdout. Its stdout is kept on the host for
diagnosis (root-only, /var/log/kubeforge/) but only after both are masked on the way to the file:
no token or key is ever written there, and nothing of it goes back to the operator's machine. Token
and key reach kubeadm inside the 0600 config files only (which stay: see docs/lifecycle.md).
"""

from __future__ import annotations

from kubeforge.model import Host
from kubeforge.model.kubeadm_paths import ADMIN_CONF, KUBECTL
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import RunStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import api_gate, puts, q
from kubeforge.render.context import KUBE_PKI_DIR, KUBEFORGE_DIR
from kubeforge.render.kubeadm import INIT_PATH
from kubeforge.transport.base import Command

HOST_LOG_DIR = "/var/log/kubeforge"


# What kubeadm prints that is secret: bootstrap tokens ([a-z0-9]{6}.[a-z0-9]{16}) and the
# certificate key (64 hex characters; the CA hash is 64 hex too, but always follows "sha256:").
MASK_SECRETS = (
    r"sed -E -e 's/[a-z0-9]{6}\.[a-z0-9]{16}/<token>/g'"
    r" -e 's/(^|[^:0-9a-f])[0-9a-f]{64}/\1<certificate-key>/g'"
)


def quiet(command: str, log: str) -> str:
    """Run a kubeadm command with its stdout in a root-only log file, secrets masked before they are
    written (the pipeline keeps kubeadm's exit status)."""
    return (f"umask 077\nmkdir -p {HOST_LOG_DIR}\nset -o pipefail\n"
            f"{command} | {MASK_SECRETS} > {HOST_LOG_DIR}/{log}.log\n")


def kubeforge_files(ctx: UpContext, host: Host):
    return ctx.pending(host, ctx.files_where(host, prefix=f"{KUBEFORGE_DIR}/"))


def reset_keeping_pki() -> str:
    """`kubeadm reset -f`, keeping /etc/kubernetes/pki: reset empties it, but it holds the CA and keys
    kubeforge placed (WritePki, journaled done, so a resume would not place them again) and kubeadm
    must init with them, or the cluster gets a CA no join config pins. Copied aside (the reset itself
    needs the etcd client certificates to remove the local etcd member), put back after."""
    keep = f"{KUBE_PKI_DIR}.kubeforge-keep"
    restore = f"if [ -d {keep} ]; then rm -rf {KUBE_PKI_DIR}; mv {keep} {KUBE_PKI_DIR}; fi\n"
    # scripts run under `set -euo pipefail`: the reset's status is kept so the PKI is restored either
    # way; an attempt killed in between left it aside, and the next attempt puts it back first
    return (restore + f"if [ -d {KUBE_PKI_DIR} ]; then cp -a {KUBE_PKI_DIR} {keep}; fi\nrc=0\n"
            + "{\n" + quiet("kubeadm reset -f", "kubeadm-reset") + "} || rc=$?\n"
            + restore + "exit $rc\n")


class InitFirstControlPlane:
    name = "InitFirstControlPlane"
    title = "Initialise the first control plane"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        host = ctx.first
        steps: list = puts(host, kubeforge_files(ctx, host))
        # a stopped init leaves kubelet.conf behind: the first control plane looks joined, but is not
        if not ctx.state.initialized and (ctx.state.init_incomplete or not ctx.joined(host)):
            if ctx.state.init_incomplete:
                # kubeadm's preflight refuses to init over what a stopped init left (manifests, a
                # non-empty /var/lib/etcd, its ports taken): undo it first, as kubeadm itself advises
                steps.append(RunStep(host.name, Command(script=reset_keeping_pki(), sudo=True, timeout=300),
                                     "kubeadm reset: an earlier kubeadm init stopped before the cluster was initialised",
                                     key="kubeadm-reset-incomplete-init", repeat_on_resume=True))
            init = f"kubeadm init --config {INIT_PATH} --upload-certs"
            guard = f"test -f {ADMIN_CONF} && {KUBECTL} get node {q(host.name)} >/dev/null 2>&1"
            steps.append(RunStep(host.name, Command(script=quiet(init, "kubeadm-init"), sudo=True, timeout=600),
                                 "kubeadm init", unless=Command(script=guard, sudo=True), key="kubeadm-init"))
            steps.append(api_gate(host, ctx.gate_timeout_s))
            return PhasePlan.of(self, [(host.name, steps)])
        # Both are leases decided from fresh facts on every attempt: a --resume a day later must create
        # the token and upload the certificates again even though the interrupted attempt did.
        if ctx.token_to_create and self._joins_pending(ctx):
            create = f"kubeadm token create --config {INIT_PATH}"
            steps.append(RunStep(host.name, Command(script=quiet(create, "kubeadm-token"), sudo=True),
                                 "Create the bootstrap token in the cluster", key="token-create",
                                 repeat_on_resume=True))
        if any(ctx.needs_join(cp) for cp in ctx.cluster.control_planes[1:]):
            upload = f"kubeadm init phase upload-certs --upload-certs --config {INIT_PATH}"
            steps.append(RunStep(host.name, Command(script=quiet(upload, "kubeadm-upload-certs"), sudo=True),
                                 "Upload the control-plane certificates for joining", key="upload-certs",
                                 repeat_on_resume=True))
        return PhasePlan.of(self, [(host.name, steps)],
                            reason_if_empty=f"{host.name} is initialised and no node is waiting to join")

    @staticmethod
    def _joins_pending(ctx: UpContext) -> bool:
        return any(ctx.needs_join(h) for h in ctx.cluster.nodes if h.name != ctx.first.name)

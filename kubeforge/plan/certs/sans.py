"""A running control plane's API server certificate re-issued when the inventory names something it
does not cover: a new ``endpoint.extraSANs`` entry, a new endpoint address, the control plane's own
new address or name. Rolled like renewal: one control plane at a time, kube-apiserver restarted and
that node's ``/readyz`` answering before the next.

kubeadm owns this certificate. As kubeadm's docs have it for adding SANs, the old pair is moved
aside (kubeadm keeps existing files: "If both files already exist, kubeadm skips the generation
step") and ``kubeadm init phase certs apiserver --config`` issues a new one from the cluster CA with
the configuration's certSANs; the cluster's kubeadm-config ConfigMap gets the new ClusterConfiguration
(``kubeadm init phase upload-config kubeadm``) first, so a control plane joining later and
``kubeadm upgrade`` issue the same names.

Which names are checked: the endpoint host, the extra SANs, and this control plane's own name and
addresses. The other control planes' addresses are in kubeforge's certSANs too, but a control plane
added to the inventory does not re-issue every other one's certificate (the new node's address is
not how anyone reaches the others).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable, Sequence

from kubeforge.model import Cluster, Host, RenderedFile
from kubeforge.pki.crypto import normalise_san
from kubeforge.pki.layout import KUBE_PKI
from kubeforge.plan.certs.renew import api_ready, api_url, restart_apiserver
from kubeforge.plan.endpoint.drain import behind_balancers
from kubeforge.plan.steps import GateStep, PutFileStep, RunStep
from kubeforge.render.kubeadm import APISERVER_CERTS_PATH
from kubeforge.transport.base import Command

APISERVER_CRT = f"{KUBE_PKI}/apiserver.crt"
APISERVER_KEY = f"{KUBE_PKI}/apiserver.key"
# The previous pair, kept (one generation) outside the certificate directory kubeadm reads.
ASIDE_DIR = "/etc/kubernetes/pki-replaced.kubeforge"


def apiserver_names(cluster: Cluster, host: Host) -> tuple[str, ...]:
    """What ``host``'s API server certificate must cover, normalised, without repeats."""
    wanted = [cluster.endpoint.host, *cluster.endpoint.extra_sans, host.name, *host.addresses]
    return tuple(dict.fromkeys(normalise_san(s) for s in wanted if s))


def missing_names(cluster: Cluster, host: Host, have: Iterable[str]) -> tuple[str, ...]:
    covered = {normalise_san(s) for s in have}
    return tuple(n for n in apiserver_names(cluster, host) if n not in covered)


def covers(names: Sequence[str]) -> Command:
    """The certificate on the host already covers every name (openssl's own matching): a resumed
    run does not issue it a second time."""
    checks = []
    for n in names:
        flag = "-checkip" if _is_ip(n) else "-checkhost"
        checks.append(f"openssl x509 -noout -in {APISERVER_CRT} {flag} {shlex.quote(n)} | grep -q ' does match certificate'")
    return Command(script=" && ".join(checks) or "true", sudo=True, timeout=30)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def reissue_command() -> Command:
    """Move the old pair aside, let kubeadm issue a new one; if kubeadm fails, the old pair goes back
    so the API server keeps serving with it."""
    crt, key, aside = (shlex.quote(p) for p in (APISERVER_CRT, APISERVER_KEY, ASIDE_DIR))
    script = "\n".join([
        "set -e",
        f"install -d -m 0700 {aside}",
        f"if [ -e {crt} ] || [ -e {key} ]; then mv -f {crt} {key} {aside}/; fi",
        f"if ! kubeadm init phase certs apiserver --config {shlex.quote(APISERVER_CERTS_PATH)}; then",
        f"  mv -f {aside}/apiserver.crt {aside}/apiserver.key {shlex.quote(KUBE_PKI)}/ || true",
        "  echo 'kubeadm could not issue the API server certificate; the previous one is back in place' >&2",
        "  exit 1",
        "fi",
    ])
    return Command(script=script, sudo=True, timeout=120, description="kubeadm init phase certs apiserver")


def upload_config() -> Command:
    return Command(script=f"kubeadm init phase upload-config kubeadm --config {shlex.quote(APISERVER_CERTS_PATH)}",
                   sudo=True, timeout=120, description="kubeadm init phase upload-config kubeadm")


def reissue_lane(cluster: Cluster, host: Host, config: RenderedFile, missing: Sequence[str], gate_timeout_s: float,
                 *, upload: bool) -> list:
    """Put the kubeadm configuration; (the first lane) upload the cluster configuration; move the old
    certificate aside and have kubeadm issue one for the inventory's names; restart the
    kube-apiserver static pod; wait until this node's API is ready."""
    names = apiserver_names(cluster, host)
    steps: list = [PutFileStep(host.name, config)]
    if upload:
        steps.append(RunStep(host.name, upload_config(), "Upload the cluster configuration with the new names",
                             key="upload-kubeadm-config"))
    steps.append(RunStep(host.name, reissue_command(),
                         "Re-issue the API server certificate for " + ", ".join(missing),
                         unless=covers(names), key="reissue-apiserver-cert"))
    restart = RunStep(host.name, restart_apiserver(host), "Restart kube-apiserver on its new certificate",
                      key="restart-apiserver")
    gate = GateStep(host.name, api_ready(host), "Wait for the API ready",
                    what=f"the API server of {host.name} ready at {api_url(host)} after its restart",
                    timeout_s=gate_timeout_s, interval_s=1.0, key=f"gate-api-{host.name}")
    return steps + behind_balancers(cluster, host, [restart, gate], gate_timeout_s)

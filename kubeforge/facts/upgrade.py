"""What an upgrade reads on the machines before anything changes: installed Kubernetes packages,
apt holds, the API server manifest's version (``MACHINE_PROBE`` -> NodeMachine); the kubeadm
versions the package source offers (``offered_probe`` -> versions); and the runners that send them.
The nodes as the API says are kubeforge.facts.cluster's."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kubeforge.facts.cluster import Node, kube_version_in, parse_nodes
from kubeforge.model import Host
from kubeforge.model.kubeadm_paths import APISERVER_MANIFEST, KUBECTL
from kubeforge.model.versions import KubeVersion, Version
from kubeforge.transport.base import Command, Transport

COMPONENTS = ("kubeadm", "kubelet", "kubectl")

_MARK = "@@upgrade "
_IMAGE_TAG = re.compile(r"kube-apiserver:(v?\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class NodeMachine:
    """One node as its machine says: packages, holds, API server manifest."""

    name: str
    packages: Mapping[str, KubeVersion] = field(default_factory=dict)  # component -> installed version
    held: frozenset[str] = frozenset()
    apiserver: KubeVersion | None = None  # control planes: the manifest's image tag

    def at(self, component: str, version: Version) -> bool:
        return self.packages.get(component) == version

    def installed_and_held(self, components: Iterable[str], version: Version) -> bool:
        return all(self.at(c, version) and c in self.held for c in components)


# --- the machine probe -----------------------------------------------------------------------------

MACHINE_PROBE = f"""for p in {' '.join(COMPONENTS)}; do
  echo "{_MARK}pkg $p $(dpkg-query -W -f='${{db:Status-Abbrev}} ${{Version}}' "$p" 2>/dev/null)"
done
echo "{_MARK}held $(dpkg --get-selections {' '.join(COMPONENTS)} 2>/dev/null | awk '$2 == "hold" {{ printf "%s ", $1 }}')"
echo "{_MARK}apiserver $(grep -o 'kube-apiserver:v[0-9][0-9.]*' {APISERVER_MANIFEST} 2>/dev/null | head -n 1)"
"""


def machine_probe() -> Command:
    return Command(script=MACHINE_PROBE, sudo=True, timeout=60, check=False, description="read Kubernetes package versions (read-only)")


def parse_machine(name: str, text: str) -> NodeMachine:
    packages: dict[str, KubeVersion] = {}
    held: set[str] = set()
    apiserver = None
    for line in text.splitlines():
        if not line.startswith(_MARK):
            continue
        kind, _, rest = line[len(_MARK):].partition(" ")
        if kind == "pkg":
            comp, _, status = rest.partition(" ")
            # "ii 1.34.2-1.1" installed, "hi" installed and held; "rc" (removed, config kept) or
            # nothing: not installed. The second letter is the package's state.
            parts = status.split()
            if len(parts) >= 2 and parts[0][1:2] == "i" and (v := kube_version_in(parts[1])):
                packages[comp] = v
        elif kind == "held":
            held.update(rest.split())
        elif kind == "apiserver":
            m = _IMAGE_TAG.search(rest)
            apiserver = kube_version_in(m.group(1)) if m else None
    return NodeMachine(name, packages, frozenset(held), apiserver)


# --- the cluster's view ----------------------------------------------------------------------------

def nodes_probe() -> Command:
    return Command(
        script=f"{KUBECTL} get nodes -o json",
        sudo=True,
        timeout=60,
        check=False,
        description="read the nodes from the API (read-only)",
    )


# --- what the package source offers ----------------------------------------------------------------

def offered_probe(sources_list: str) -> Command:
    """List the kubeadm versions the given apt sources offer, in a throw-away apt state directory:
    nothing under /etc/apt or /var/lib/apt changes, so planning stays read-only."""
    script = r"""d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
mkdir -p "$d/lists/partial"
cat > "$d/sources.list"
opts="-o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=$d/none -o Dir::State::Lists=$d/lists -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root"
apt-get -q $opts update >"$d/update.log" 2>&1 || { cat "$d/update.log" >&2; exit 1; }
apt-cache $opts madison kubeadm
"""
    return Command(script=script, sudo=True, stdin=sources_list.encode(), timeout=120, check=False,
                   description="list the kubeadm versions the package source offers (read-only)")


def parse_madison(text: str) -> frozenset[KubeVersion]:
    """``   kubeadm | 1.34.2-1.1 | http://... Packages`` lines -> the upstream versions offered."""
    out = set()
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 2 and parts[0] == "kubeadm" and (v := kube_version_in(parts[1])):
            out.add(v)
    return frozenset(out)


# --- the runners -----------------------------------------------------------------------------------

def read_machines(pool, nodes: Sequence[Host]) -> tuple[dict[str, NodeMachine], dict[str, str]]:
    """The machine probe on every node, in parallel: (machines, host -> why it was not read)."""
    result = pool.fanout(nodes, lambda t: parse_machine(t.host, t.run(machine_probe()).stdout))
    machines, unreachable = {}, {}
    for o in result.outcomes:
        if o.ok:
            machines[o.host] = o.value
        else:
            unreachable[o.host] = o.message
    return machines, unreachable


def read_nodes(transport: Transport) -> tuple[dict[str, Node], str | None]:
    """The nodes as the API says, and why they could not be read (None when they were).
    A TransportError (the host not reached) is the caller's."""
    res = transport.run(nodes_probe())
    if res.exit_status != 0:
        return {}, (res.stderr.strip() or res.stdout.strip() or f"kubectl exited {res.exit_status}").splitlines()[-1][:300]
    try:
        return parse_nodes(res.stdout), None
    except ValueError as exc:
        return {}, f"unreadable `kubectl get nodes` output: {exc}"


def read_offered(transport: Transport, sources_list: str) -> tuple[frozenset[KubeVersion] | None, list[str]]:
    """The kubeadm versions the apt sources offer, or (None, the last lines apt said) when it failed."""
    res = transport.run(offered_probe(sources_list))
    if res.exit_status != 0:
        return None, (res.stderr.strip() or res.stdout.strip()).splitlines()[-3:]
    return parse_madison(res.stdout), []

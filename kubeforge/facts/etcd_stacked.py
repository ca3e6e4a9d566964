"""Stacked etcd as each control plane's static pod manifests say (read before a stacked restore):
the member's name, peer URL and data dir from etcd.yaml (or the copy an interrupted restore moved
aside), where kube-apiserver.yaml is, and which etcd tools the host has."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubeforge.model import Cluster
from kubeforge.model.kubeadm_paths import APISERVER_MANIFEST, ETCD_MANIFEST
from kubeforge.transport.base import Command

# Outside manifests/, so the kubelet does not see them while etcd is replaced.
ETCD_ASIDE = "/etc/kubernetes/etcd.yaml.kubeforge-restore"
APISERVER_ASIDE = "/etc/kubernetes/kube-apiserver.yaml.kubeforge-restore"


@dataclass(frozen=True)
class StackedMember:
    """One control plane's etcd as its static pod manifest (or the copy moved aside) says."""

    host: str
    name: str | None
    peer_url: str | None
    data_dir: str | None
    manifest: str  # "manifests", "aside" or "" (none found)
    apiserver: str  # the same for kube-apiserver.yaml
    etcdutl: bool
    etcdctl: bool
    restore_flags: tuple[str, ...] = ()


def probe_command() -> Command:
    script = "\n".join(
        [
            "echo @@manifest",
            f"if [ -e {ETCD_MANIFEST} ]; then echo manifests; cat {ETCD_MANIFEST}; "
            f"elif [ -e {ETCD_ASIDE} ]; then echo aside; cat {ETCD_ASIDE}; fi",
            "echo @@apiserver",
            f"if [ -e {APISERVER_MANIFEST} ]; then echo manifests; elif [ -e {APISERVER_ASIDE} ]; then echo aside; fi",
            "echo @@tools",
            "command -v etcdctl >/dev/null 2>&1 && echo etcdctl",
            "if command -v etcdutl >/dev/null 2>&1; then echo etcdutl; etcdutl snapshot restore --help 2>&1 | "
            "grep -o -e '--bump-revision' -e '--mark-compacted' | sort -u; fi",
            "echo @@end",
        ]
    )
    return Command(script=script, sudo=True, timeout=30, check=False, description="stacked etcd manifest and tools")


def _flag(text: str, name: str) -> str | None:
    # kubeadm writes one "- --flag=value" item per line; quoting differs between writers
    m = re.search(rf"--{re.escape(name)}=([^\s\"']+)", text)
    return m.group(1) if m else None


def parse_probe(host: str, text: str) -> StackedMember:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current:
            sections[current].append(line)
    if "end" not in sections:
        raise ValueError(f"{host}: the stacked etcd probe's output is incomplete")
    manifest = sections.get("manifest", [])
    where = manifest[0].strip() if manifest else ""
    body = "\n".join(manifest[1:])
    tools = [t.strip() for t in sections.get("tools", []) if t.strip()]
    peer = _flag(body, "initial-advertise-peer-urls")
    return StackedMember(
        host=host,
        name=_flag(body, "name"),
        peer_url=peer.split(",")[0] if peer else None,
        data_dir=_flag(body, "data-dir"),
        manifest=where,
        apiserver=(sections.get("apiserver") or [""])[0].strip(),
        etcdutl="etcdutl" in tools,
        etcdctl="etcdctl" in tools,
        restore_flags=tuple(f for f in ("--bump-revision", "--mark-compacted") if f in tools),
    )


# --- the runners -----------------------------------------------------------------------------------
def read_stacked_members(cluster: Cluster, pool):
    """The probe on every control plane, in parallel: a FanoutResult of StackedMember per host."""
    probe = probe_command()
    return pool.fanout(cluster.control_planes, lambda t: parse_probe(t.host, t.run(probe).stdout))


def apiserver_manifest_hosts(cluster: Cluster, pool) -> tuple:
    """Control planes whose API server runs from a manifest, or whose manifest an interrupted restore
    left aside (so a re-run puts it back)."""
    probe = f"[ -e {APISERVER_MANIFEST} ] || [ -e {APISERVER_ASIDE} ]"
    return tuple(cp for cp in cluster.control_planes
                 if pool.get(cp).run(Command(script=probe, sudo=True, check=False, timeout=30)).ok)

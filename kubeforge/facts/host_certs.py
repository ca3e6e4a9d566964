"""The certificates kubeforge or kubeadm put on a host, read in one sudo script that prints only
certificate blocks (never a key: see kubeforge.pki.hostcerts, which parses them); ``read_hosts`` asks
every host in parallel."""

from __future__ import annotations

from kubeforge.errors import CheckFailed
from kubeforge.model import Cluster
from kubeforge.pki.hostcerts import CERT_GLOBS, KUBECONFIGS, MARK, HostCert, parse_probe
from kubeforge.transport.base import Command


def probe_command(cert_globs: tuple[str, ...] = CERT_GLOBS, kubeconfigs: tuple[str, ...] = KUBECONFIGS) -> Command:
    """Every certificate kubeforge knows of on a host; or only those named (``up`` reads just the
    API server's certificate)."""
    script = "\n".join([
        f"for f in {' '.join(cert_globs)}; do",
        '  [ -f "$f" ] || continue',
        f'  echo "{MARK}$f"',
        "  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' \"$f\"",
        "done",
        f"for f in {' '.join(kubeconfigs) or '/dev/null/none'}; do",
        '  [ -f "$f" ] || continue',
        f'  echo "{MARK}$f"',
        "  sed -n 's/^[[:space:]]*client-certificate-data:[[:space:]]*//p' \"$f\"",
        "done",
        "echo '@@end'",
    ])
    return Command(script=script, sudo=True, timeout=60, description="read the certificates on this host")


def read_hosts(cluster: Cluster, pool, hosts=None, probe=None) -> tuple[dict[str, list[HostCert]], list[str]]:
    """``({host: certificates}, [unreachable "host: why"])``, every host read in parallel. A host
    that answered but whose answer could not be read is a failed check (exit 4), not unreachable."""
    return read_each(pool, hosts if hosts is not None else cluster.hosts, probe or probe_command(), parse_probe,
                     "the certificates")


def read_each(pool, hosts, probe: Command, parse, what: str) -> tuple[dict, list[str]]:
    """``({host: parse(host, probe's stdout)}, [unreachable "host: why"])``, every host asked in
    parallel; an answer ``parse`` refuses (ValueError) is a failed check (exit 4) naming ``what``."""
    from kubeforge.transport.pool import Status

    def one(t):
        try:
            return parse(t.host, t.run(probe).stdout)
        except ValueError as exc:
            raise CheckFailed(str(exc)) from None

    result = pool.fanout(hosts, one)
    found, down, broken = {}, [], []
    for o in result.outcomes:
        if o.ok:
            found[o.host] = o.value
        elif o.status is Status.NOT_REACHED:
            down.append(f"{o.host}: {o.message}")
        else:
            broken.append(f"{o.host}: {o.message}")
    if broken:
        raise CheckFailed(f"cannot read {what} on " + "; ".join(broken),
                          unreachable=tuple(d.split(":")[0] for d in down))
    return found, down

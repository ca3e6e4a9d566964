"""Shell commands the etcd phases run on members, as data (Command objects and their guards)."""

from __future__ import annotations

import shlex

from kubeforge.model import Cluster, Host
from kubeforge.plan.etcd.ctl import client_url, etcdctl_line
from kubeforge.plan.etcd.probe import STAMP_PATH
from kubeforge.plan.steps import RunStep
from kubeforge.transport.base import Command

POLICY_RC = "/usr/sbin/policy-rc.d"


def _q(s: str) -> str:
    return shlex.quote(s)


def installed_guard(cluster: Cluster) -> Command:
    """Succeeds when every etcd package is installed at the wanted upstream version."""
    want = str(cluster.etcd.version)
    pkgs = " ".join(_q(p) for p in cluster.packages.etcd_packages)
    n = len(cluster.packages.etcd_packages)
    return Command(
        script=(
            f"dpkg-query -W -f='${{db:Status-Abbrev}}|${{Version}}\\n' {pkgs} 2>/dev/null | "
            f"awk -F'|' -v w={_q(want)} 'index($1, \"ii\") == 1 && (index($2, w \"-\") == 1 || index($2, w \"+\") == 1 "
            f"|| $2 == w) {{n++}} END {{exit n == {n} ? 0 : 1}}'"
        ),
        sudo=True,
        timeout=30,
        description="etcd packages installed at the wanted version",
    )


def install_packages(cluster: Cluster) -> Command:
    """apt-get install of the etcd packages at the inventory's version, with a policy-rc.d that
    forbids service starts in place meanwhile: Debian's postinst would otherwise start its own
    single-member etcd on the data dir before kubeforge's unit and certificates are there."""
    want = str(cluster.etcd.version)
    pick = []
    for p in cluster.packages.etcd_packages:
        var = "v_" + p.replace("-", "_")
        pick.append(
            f"{var}=$(apt-cache madison {_q(p)} | awk -v w={_q(want)} "
            f"'{{v=$3}} index(v, w \"-\") == 1 || index(v, w \"+\") == 1 || v == w {{print v; exit}}')\n"
            f"[ -n \"${var}\" ] || {{ echo \"{p} {want} is not offered by the configured package source\" >&2; exit 3; }}"
        )
    versions = " ".join(f"{_q(p)}=\"$v_{p.replace('-', '_')}\"" for p in cluster.packages.etcd_packages)
    script = "\n".join(
        [
            "export DEBIAN_FRONTEND=noninteractive",
            'saved=""',
            f'if [ -e {POLICY_RC} ]; then saved=$(mktemp); cp -a {POLICY_RC} "$saved"; fi',
            f'put_back() {{ if [ -n "$saved" ]; then mv -f "$saved" {POLICY_RC}; else rm -f {POLICY_RC}; fi; }}',
            "trap put_back EXIT",
            f"printf '#!/bin/sh\\n# kubeforge: no service starts while etcd is installed\\nexit 101\\n' > {POLICY_RC}",
            f"chmod 0755 {POLICY_RC}",
            # apt-get update exits 0 when a source cannot be fetched; say so instead of "not offered"
            'out=$(apt-get update -q -o Acquire::Retries=3 2>&1) || { echo "$out" >&2; exit 2; }',
            "if printf '%s\\n' \"$out\" | grep -q -e '^W: Failed to fetch' -e '^E: '; then",
            '  printf \'%s\\n\' "$out" >&2; echo "apt-get update could not read the package source" >&2; exit 2',
            "fi",
            *pick,
            f"apt-get install -y -q -o Dpkg::Options::=--force-confold {versions} >/dev/null",
            # Debian enables its own unit; ours in /etc/systemd/system replaces it. Nothing runs yet.
            "systemctl stop etcd 2>/dev/null || true",
        ]
    )
    return Command(script=script, sudo=True, timeout=900, description=f"install etcd {want}")


def install_steps(cluster: Cluster, host: Host, *, key: str = "", title: str = "") -> list[RunStep]:
    """The steps that put etcd ``cluster.etcd.version`` on ``host`` from the inventory's source,
    each skipped when already converged. The one place install and upgrade plans get them from."""
    return [RunStep(host.name, install_packages(cluster), title or f"Install etcd {cluster.etcd.version}",
                    unless=installed_guard(cluster), key=key)]


def prepare_user(cluster: Cluster) -> tuple[Command, Command]:
    """(command, guard): the etcd user and group, the data dir 0700 etcd:etcd, /etc/etcd/pki."""
    d = _q(cluster.etcd.data_dir)
    cmd = Command(
        script="\n".join(
            [
                "getent group etcd >/dev/null || groupadd --system etcd",
                f"getent passwd etcd >/dev/null || useradd --system --gid etcd --home-dir {d} --no-create-home "
                "--shell /usr/sbin/nologin etcd",
                f"install -d -m 0700 -o etcd -g etcd {d}",
                "install -d -m 0755 /etc/etcd /etc/etcd/pki",
            ]
        ),
        sudo=True,
        timeout=60,
        description="etcd user and data dir",
    )
    guard = Command(
        script=f"getent passwd etcd >/dev/null && [ \"$(stat -c '%a %U %G' {d})\" = '700 etcd etcd' ] && [ -d /etc/etcd/pki ]",
        sudo=True,
        timeout=30,
    )
    return cmd, guard


def stamp_is(sha: str) -> Command:
    return Command(script=f"[ \"$(cat {STAMP_PATH} 2>/dev/null)\" = {_q(sha)} ]", sudo=True, timeout=30)


def systemctl(*args: str, timeout: float = 120) -> Command:
    return Command(argv=["systemctl", *args], sudo=True, timeout=timeout)


def is_active() -> Command:
    return Command(argv=["systemctl", "is-active", "--quiet", "etcd"], sudo=True, timeout=30)


def is_enabled() -> Command:
    return Command(argv=["systemctl", "is-enabled", "--quiet", "etcd"], sudo=True, timeout=30)


def cluster_healthy(cluster: Cluster, members: tuple[Host, ...]) -> Command:
    """Every given member answers a linearizable health read (which needs a leader) and all of
    them name the same leader."""
    eps = [client_url(cluster, m) for m in members]
    health = etcdctl_line(cluster, eps, "endpoint", "health")
    status = etcdctl_line(cluster, eps, "endpoint", "status", "-w", "json")
    script = "\n".join(
        [
            f"{health} >/dev/null",
            f"leaders=$({status} | grep -o '\"leader\":[0-9]*' | sort -u)",
            '[ -n "$leaders" ] && [ "$(printf "%s\\n" "$leaders" | wc -l)" -eq 1 ] && [ "$leaders" != \'"leader":0\' ]',
        ]
    )
    return Command(script=script, sudo=True, timeout=40, description="etcd members healthy, one leader")


def member_healthy(cluster: Cluster, member: Host) -> Command:
    return Command(
        script=etcdctl_line(cluster, [client_url(cluster, member)], "endpoint", "health"),
        sudo=True,
        timeout=30,
        description=f"etcd member {member.name} healthy",
    )

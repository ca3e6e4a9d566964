"""Shell commands the etcd phases run on members, as data (Command objects and their guards)."""

from __future__ import annotations

from dataclasses import replace
from shlex import quote as _q

from kubeforge.facts.etcd import PACKAGE, STAMP_PATH
from kubeforge.facts.etcdctl import client_url, etcdctl_line
from kubeforge.model import Cluster, Host
from kubeforge.plan.apt import DEBIAN_FRONTEND, FINISH_DPKG, apt_update, no_service_starts, not_enabled_when_fresh
from kubeforge.plan.etcd.source import BIN_DIR, DEFAULT_ARCH, UNAME_ARCH, EtcdArchive, archive_for, load_verified
from kubeforge.plan.etcd.upgrade_checks import package_state_clean
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.transport.base import Command


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
    fresh_before, fresh_after = not_enabled_when_fresh(PACKAGE, "etcd")
    script = "\n".join(
        [
            DEBIAN_FRONTEND,
            # installed before (an upgrade, a re-run): its enabled-at-boot state is left as it is
            fresh_before,
            no_service_starts("etcd is installed"),
            apt_update(),
            *pick,
            FINISH_DPKG,
            f"apt-get install -y -q -o Dpkg::Options::=--force-confold {versions} >/dev/null",
            # Debian enables its own unit; ours in /etc/systemd/system replaces it. Nothing runs yet.
            "systemctl stop etcd 2>/dev/null || true",
            # ...and nothing may start at boot: after a power loss Debian's unit would start a
            # single-member etcd of its own (and a joining member must not start before it is
            # added). kubeforge enables etcd itself once the member may start.
            fresh_after,
        ]
    )
    return Command(script=script, sudo=True, timeout=900, description=f"install etcd {want}")


def install_steps(cluster: Cluster, host: Host, *, key: str = "", title: str = "",
                  arch: str = DEFAULT_ARCH) -> list[RunStep | PutFileStep]:
    """The steps that put etcd ``cluster.etcd.version`` on ``host`` from the inventory's source,
    each skipped when already converged. The one place install and upgrade plans get them from.

    Debian sources: one apt step. Release archives (releaseURL, upstream, offline): the archive
    the workflow fetched and verified beforehand (``prepare_etcd_sources``) is pushed, then
    unpacked into /usr/local/bin unless etcd there already reports the version."""
    title = title or f"Install etcd {cluster.etcd.version}"
    archive = archive_for(cluster, arch=arch)
    if archive is None:
        # installed, and no trace of an install cut short (kubeforge's policy-rc.d, a dpkg to finish)
        guard = installed_guard(cluster)
        guard = replace(guard, script=f"{guard.script} && {package_state_clean().script}")
        return [RunStep(host.name, install_packages(cluster), title, unless=guard, key=key)]
    file = load_verified(cluster, archive)
    return [
        PutFileStep(host.name, file, title=f"Push {archive.name}", key=f"{key}-push" if key else ""),
        RunStep(host.name, unpack_archive(archive, file.sha256), title, unless=archive_installed_guard(archive),
                key=key),
    ]


def archive_installed_guard(archive: EtcdArchive) -> Command:
    """Succeeds when every binary in /usr/local/bin reports the archive's version. grep reads all
    of the output (no -q): under pipefail an early exit would fail the pipeline by SIGPIPE."""
    v = archive.version
    checks = [f"{BIN_DIR}/etcd --version 2>/dev/null | grep -x {_q('etcd Version: ' + v)} >/dev/null"]
    checks += [f"{BIN_DIR}/{b} version 2>/dev/null | grep -x {_q(f'{b} version: {v}')} >/dev/null"
               for b in archive.binaries if b != "etcd"]
    return Command(script=" && ".join(checks), sudo=True, timeout=30,
                   description=f"etcd {v} installed in {BIN_DIR}")


def unpack_archive(archive: EtcdArchive, sha256: str) -> Command:
    """Check the pushed archive's sha256 and the host's arch, unpack it beside /usr/local/bin and
    rename each binary into place (a rename never leaves a half-written etcd behind)."""
    a = _q(archive.remote_path)
    arch_cases = " ".join(f"{k}) a={v};;" for k, v in UNAME_ARCH.items())
    lines = [
        f'case "$(uname -m)" in {arch_cases} *) a=$(uname -m);; esac',
        f'[ "$a" = {_q(archive.arch)} ] || {{ echo "this host is $a; the etcd archive is for {archive.arch}" >&2; exit 3; }}',
        f"echo {_q(sha256 + '  ' + archive.remote_path)} | sha256sum --check --quiet --strict - >/dev/null || "
        f'{{ echo "{archive.remote_path} does not have sha256 {sha256}" >&2; exit 3; }}',
        f"install -d -m 0755 {BIN_DIR}",
        # the temp dir sits on the same filesystem as the binaries, so each mv is a rename(2)
        f"t=$(mktemp -d {BIN_DIR}/.kubeforge-etcd.XXXXXX); trap 'rm -rf -- \"$t\"' EXIT",
        f'tar -xzf {a} -C "$t" --no-same-owner --strip-components=1 {_q(archive.top_dir)}',
    ]
    for b in archive.binaries:
        lines.append(f'[ -f "$t/{b}" ] || {{ echo "{archive.name} has no {archive.top_dir}/{b}" >&2; exit 3; }}')
        lines.append(f'chown root:root "$t/{b}"; chmod 0755 "$t/{b}"; mv -f -- "$t/{b}" {BIN_DIR}/{b}')
    lines.append(
        f"{BIN_DIR}/etcd --version | grep -x {_q('etcd Version: ' + archive.version)} >/dev/null || "
        f'{{ echo "{BIN_DIR}/etcd does not report version {archive.version}" >&2; exit 3; }}'
    )
    return Command(script="\n".join(lines), sudo=True, timeout=300, description=f"unpack etcd {archive.version}")


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

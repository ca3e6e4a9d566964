"""Fetch and verify etcd release archives on the operator's machine, before any host is touched.

    arches = prepare_for_members(cluster, pool, [cluster.etcd.version])   # install
    arches = prepare_for_members(cluster, pool, hops)                     # upgrade: every hop at once
    steps = install_steps(at_version, host, key=..., title=..., arch=arches[host.name])

``prepare_etcd_sources(cluster, versions, arches=...)`` fills ``.kubeforge/<cluster>/cache/etcd/v<V>/``
with the archive and (unless the inventory pins the checksum) the SHA256SUMS it was checked against.
A release URL is fetched once: a cached archive that matches its expected sha256 is used as it is.
An offline bundle file is hashed on every run (a local read), so a bundle whose archive changed is
never covered by an older good copy in the cache. A mismatch is input-class (exit 3) and names the
file, the expected and the actual sha256; a bad download is kept as ``<name>.rejected`` to look at.
With the mirror's Debian packages there is nothing to prepare.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kubeforge.errors import CheckFailed, InputError, TransportError
from kubeforge.facts.arch import read_machine_arch
from kubeforge.model import Cluster, Host
from kubeforge.model.files import file_sha256, private_dir
from kubeforge.plan.etcd.source import (
    DEFAULT_ARCH,
    UNAME_ARCH,
    EtcdArchive,
    archive_for,
    cached_archive,
    cached_sums,
    check_sha,
    expected_checksum,
    parse_sha256sums,
)

CHUNK = 1 << 20
Opener = Callable[..., object]  # urllib.request.urlopen's shape, replaceable in tests


@dataclass(frozen=True)
class PreparedArchive:
    archive: EtcdArchive
    path: Path  # the verified copy in the cache
    sha256: str
    checksum_from: str  # the pin or the SHA256SUMS it was checked against
    fetched: bool  # False: the cache already held this very file


def prepare_etcd_sources(cluster: Cluster, versions: Iterable[object], *, arches: Iterable[str] = (DEFAULT_ARCH,),
                         opener: Opener | None = None, timeout: float = 60.0) -> list[PreparedArchive]:
    """Every archive ``versions`` x ``arches`` needs, fetched (or copied from the bundle) and
    verified into the cache; [] when etcd comes from the mirror's Debian packages."""
    opener = opener or urllib.request.urlopen
    out = []
    for v in dict.fromkeys(str(v) for v in versions):
        for arch in sorted(set(arches)):
            archive = archive_for(cluster, v, arch)
            if archive is None:
                return []
            out.append(_prepare(cluster, archive, opener, timeout))
    return out


def member_arches(cluster: Cluster, pool, hosts: tuple[Host, ...] | None = None) -> dict[str, str]:
    """host name -> etcd's arch name for that machine (read-only: ``uname -m``)."""
    hosts = cluster.etcd_members if hosts is None else hosts
    result = read_machine_arch(pool, hosts)
    out = {}
    down = []
    for o in result.outcomes:
        if o.ok:
            out[o.host] = UNAME_ARCH.get(o.value, o.value)
        else:
            down.append(o)
    if down:
        raise TransportError(", ".join(o.host for o in down),
                             "cannot read the machine architecture: " + "; ".join(f"{o.host}: {o.message}" for o in down),
                             hint="bring the machine back (or fix SSH), then run again; nothing was changed")
    return out


def prepare_for_members(cluster: Cluster, pool, versions: Iterable[object], *,
                        hosts: tuple[Host, ...] | None = None, opener: Opener | None = None) -> dict[str, str]:
    """The one call for a workflow: each member's arch (only asked when etcd comes from archives),
    then every archive the versions need, verified. Returns host name -> arch for install_steps."""
    hosts = cluster.etcd_members if hosts is None else hosts
    if archive_for(cluster) is None:
        return {h.name: DEFAULT_ARCH for h in hosts}
    arches = member_arches(cluster, pool, hosts)
    prepare_etcd_sources(cluster, versions, arches=set(arches.values()), opener=opener)
    return arches


# --- one archive ---------------------------------------------------------------------------------------

def _prepare(cluster: Cluster, archive: EtcdArchive, opener: Opener, timeout: float) -> PreparedArchive:
    dest = cached_archive(cluster, archive)
    private_dir(dest.parent)
    pinned = cluster.etcd.pinned_checksum(archive.version) is not None
    sums_path = cached_sums(cluster, archive)
    if archive.offline:
        if not pinned:
            _copy_local(Path(archive.sums_url), sums_path)
        return _from_bundle(cluster, archive, dest)
    if dest.is_file() and (pinned or sums_path.is_file()):
        expected, origin = _expected(cluster, archive, sums_path, pinned)
        if file_sha256(dest) == expected:
            return PreparedArchive(archive, dest, expected, origin, fetched=False)
    if not pinned:
        _download(opener, archive.sums_url, sums_path, timeout)
    expected, origin = _expected(cluster, archive, sums_path, pinned)
    actual = _download(opener, archive.url, dest, timeout, expected=expected)
    if actual != expected:
        rejected = dest.with_name(dest.name + ".rejected")
        os.replace(dest, rejected)
        check_sha(archive, rejected, actual, expected, origin)
    return PreparedArchive(archive, dest, expected, origin, fetched=True)


def _expected(cluster: Cluster, archive: EtcdArchive, sums_path: Path, pinned: bool) -> tuple[str, str]:
    sums = None
    if not pinned:
        sums = parse_sha256sums(sums_path.read_text(errors="replace"), archive.sums_url)
    return expected_checksum(cluster, archive, sums)


def _from_bundle(cluster: Cluster, archive: EtcdArchive, dest: Path) -> PreparedArchive:
    src = Path(archive.url)
    expected, origin = _expected(cluster, archive, cached_sums(cluster, archive),
                                 cluster.etcd.pinned_checksum(archive.version) is not None)
    if not src.is_file():
        raise InputError(f"{src}: no such file: the offline bundle has no etcd {archive.version} for {archive.arch}",
                         hint=f"put {archive.name} and its line in SHA256SUMS into {archive.base}")
    actual = file_sha256(src)
    check_sha(archive, src, actual, expected, origin)
    fetched = not (dest.is_file() and file_sha256(dest) == expected)
    if fetched:
        _copy_local(src, dest)
        # the copy is what gets pushed: it must be the file that was just checked
        check_sha(archive, dest, file_sha256(dest), expected, origin)
    return PreparedArchive(archive, dest, expected, origin, fetched=fetched)


def _copy_local(src: Path, dest: Path) -> None:
    if not src.is_file():
        raise InputError(f"{src}: no such file (packages.source offline reads etcd's checksums from it)",
                         hint=f"add {src.name} to the bundle, or pin the checksum in etcd.checksums")
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def _download(opener: Opener, url: str, dest: Path, timeout: float, *, expected: str | None = None) -> str:
    """Stream ``url`` into ``dest`` (via a .part file), returning its sha256."""
    tmp = dest.with_name(f".{dest.name}.part")
    h = hashlib.sha256()
    try:
        with opener(url, timeout=timeout) as resp, tmp.open("wb") as f:  # type: ignore[attr-defined]
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                h.update(chunk)
                f.write(chunk)
    except urllib.error.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}",
                         hint="check etcd.releaseURL and etcd.version; nothing was changed on any host") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise CheckFailed(f"cannot fetch {url}: {reason}",
                          hint="is the release site reachable from this machine? nothing was changed on any host") from None
    os.replace(tmp, dest)
    return h.hexdigest()

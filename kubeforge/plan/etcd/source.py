"""Where etcd comes from when it is not a Debian package: release archives and their checksums.

    archive = archive_for(cluster, version, arch)     # None: the mirror's Debian packages
    archive.url, archive.sums_url                      # what the operator's machine fetches (or copies)
    sha, origin = expected_checksum(cluster, archive, parse_sha256sums(text))
    file = load_verified(cluster, archive)             # the cached archive as a RenderedFile

The choice (decided once, here and in kubeforge.render.etcd.etcd_from_archive):
  - ``etcd.releaseURL`` set: ``{releaseURL}/v{V}/etcd-v{V}-linux-{arch}.tar.gz``, any package source;
  - ``packages.source: upstream``: the same under etcd's GitHub releases;
  - ``packages.source: offline``: ``{bundleDir}/etcd-v{V}-linux-{arch}.tar.gz``;
  - ``packages.source: mirror``: Debian packages from the mirror (``archive_for`` returns None).
A pinned checksum (``etcd.checksums``) wins over the site's SHA256SUMS: an operator who pins does not
trust the download site's list.

Fetching and verifying is the workflow's job (kubeforge.workflows.etcd.sources); this module only
names things, parses checksum lists and reads back what the workflow verified into the cache.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kubeforge.errors import InputError
from kubeforge.model import Cluster, PackageSourceKind, RenderedFile
from kubeforge.render.etcd import ARCHIVE_BIN_DIR, etcd_from_archive

UPSTREAM_RELEASES = "https://github.com/etcd-io/etcd/releases/download"
SUMS_NAME = "SHA256SUMS"
# Where the pushed archive stays on a member (the put is skipped while its sha256 matches).
REMOTE_DIR = "/var/cache/kubeforge/etcd"
BIN_DIR = ARCHIVE_BIN_DIR
DEFAULT_ARCH = "amd64"
# `uname -m` -> the arch in etcd's archive names
UNAME_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
              "ppc64le": "ppc64le", "s390x": "s390x"}

# "<64 hex>  name" (text mode) or "<64 hex> *name" (binary mode), as sha256sum writes them
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](\S.*)$")


@dataclass(frozen=True)
class EtcdArchive:
    version: str  # "3.5.16"
    arch: str  # "amd64"
    offline: bool  # from the bundle dir (a local path) rather than a release URL
    base: str  # release URL without trailing "/", or the bundle dir

    @property
    def top_dir(self) -> str:
        return f"etcd-v{self.version}-linux-{self.arch}"

    @property
    def name(self) -> str:
        return f"{self.top_dir}.tar.gz"

    @property
    def url(self) -> str:
        """Where the archive comes from: a URL, or a local path for the offline bundle."""
        if self.offline:
            return str(Path(self.base) / self.name)
        return f"{self.base}/v{self.version}/{self.name}"

    @property
    def sums_url(self) -> str:
        if self.offline:
            return str(Path(self.base) / SUMS_NAME)
        return f"{self.base}/v{self.version}/{SUMS_NAME}"

    @property
    def remote_path(self) -> str:
        return f"{REMOTE_DIR}/{self.name}"

    @property
    def binaries(self) -> tuple[str, ...]:
        """What the archive must hold: etcdutl exists from 3.5 on."""
        major, minor = (int(x) for x in self.version.split(".")[:2])
        return ("etcd", "etcdctl", "etcdutl") if (major, minor) >= (3, 5) else ("etcd", "etcdctl")


def archive_for(cluster: Cluster, version: object | None = None, arch: str = DEFAULT_ARCH) -> EtcdArchive | None:
    """The release archive etcd ``version`` (default: the inventory's) comes from, or None when etcd
    comes from the mirror's Debian packages."""
    if not etcd_from_archive(cluster):
        return None
    v = str(version if version is not None else cluster.etcd.version)
    if cluster.etcd.release_url:
        return EtcdArchive(v, arch, False, cluster.etcd.release_url.rstrip("/"))
    if cluster.packages.kind is PackageSourceKind.OFFLINE:
        if cluster.packages.bundle_dir is None:
            raise InputError(f"{cluster.source}: packages.source offline needs bundleDir")
        return EtcdArchive(v, arch, True, str(cluster.packages.bundle_dir))
    return EtcdArchive(v, arch, False, UPSTREAM_RELEASES)


def parse_sha256sums(text: str, origin: str = SUMS_NAME) -> dict[str, str]:
    """name -> lowercase sha256 from a sha256sum-style list; blank lines and '#' comments are
    ignored, anything else that is not a checksum line is an error naming the line."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SUMS_LINE.match(line)
        if not m:
            raise InputError(f"{origin}:{n}: not a checksum line (expected '<sha256>  <file name>'): {line[:80]!r}")
        name = m.group(2).strip()
        out[name.removeprefix("./")] = m.group(1).lower()
    return out


def expected_checksum(cluster: Cluster, archive: EtcdArchive, sums: dict[str, str] | None) -> tuple[str, str]:
    """(sha256, where it comes from) for ``archive``: the inventory's pin, else the SHA256SUMS entry."""
    pin = cluster.etcd.pinned_checksum(archive.version)
    if pin:
        return pin.lower(), f"{cluster.source}: etcd.checksums[{archive.version}]"
    if sums is None or archive.name not in sums:
        raise InputError(
            f"{archive.sums_url} has no checksum for {archive.name}",
            hint=f"pin it in the inventory (etcd.checksums: {{'{archive.version}': <sha256>}}) or fix the list",
        )
    return sums[archive.name], archive.sums_url


def check_sha(archive: EtcdArchive, path: Path, actual: str, expected: str, origin: str) -> None:
    """Input-class refusal (exit 3) naming the file, the expected and the actual sha256."""
    if actual != expected:
        raise InputError(
            f"{path}: sha256 {actual} does not match the expected {expected} (from {origin}); "
            f"refusing etcd {archive.version} from {archive.url}",
            hint="the download is damaged or not the release it claims to be; nothing was changed on any host",
        )


# --- the local cache the workflow fills ---------------------------------------------------------------

def cache_dir(cluster: Cluster, archive: EtcdArchive) -> Path:
    return cluster.state_dir / "cache" / "etcd" / f"v{archive.version}"


def cached_archive(cluster: Cluster, archive: EtcdArchive) -> Path:
    return cache_dir(cluster, archive) / archive.name


def cached_sums(cluster: Cluster, archive: EtcdArchive) -> Path:
    return cache_dir(cluster, archive) / SUMS_NAME


def cached_expected(cluster: Cluster, archive: EtcdArchive) -> tuple[str, str]:
    sums_path = cached_sums(cluster, archive)
    sums = parse_sha256sums(sums_path.read_text(), str(sums_path)) if sums_path.is_file() else None
    return expected_checksum(cluster, archive, sums)


_loaded: dict[tuple[str, int, int], RenderedFile] = {}


def load_verified(cluster: Cluster, archive: EtcdArchive) -> RenderedFile:
    """The cached archive as a file to push, checked again against its expected sha256. Every member
    (and every caller) shares one copy of the bytes."""
    path = cached_archive(cluster, archive)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(
            f"etcd {archive.version} ({archive.name}) has not been fetched and verified into {path.parent}",
            hint="kubeforge.workflows.etcd.sources.prepare_etcd_sources must run before planning",
        ) from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _loaded:
        content = path.read_bytes()
        expected, origin = cached_expected(cluster, archive)
        check_sha(archive, path, hashlib.sha256(content).hexdigest(), expected, origin)
        if len(_loaded) >= 8:  # a plan needs a version or a few (upgrade hops); never grow without bound
            _loaded.clear()
        _loaded[key] = RenderedFile(archive.remote_path, content, mode=0o644, source=archive.url)
    return _loaded[key]


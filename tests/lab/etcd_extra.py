"""More etcd versions for the lab mirror, so etcd upgrades and release-archive installs are real.

Bookworm (the image's release) ships only etcd 3.4.23. Debian's later releases ship 3.5 builds that
run on bookworm (they need libc6 >= 2.34; bookworm has 2.36): their .debs are added to the mirror's
flat ``debian/`` repository beside 3.4.23. From the same real binaries the mirror also lays out
release archives the way etcd's GitHub releases do, which stand in for the download site:

    etcd-releases/v{V}/etcd-v{V}-linux-amd64.tar.gz   (top dir etcd-v{V}-linux-amd64/: etcd, etcdctl[, etcdutl])
    etcd-releases/v{V}/SHA256SUMS                      ("<sha256>  etcd-v{V}-linux-amd64.tar.gz")
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from tests.lab.paths import CACHE_DIR, LabError

ARCHIVE = "http://deb.debian.org/debian"
SUITES = ("trixie", "sid")  # trixie: 3.5.16; sid: the newest 3.5 patch Debian has
# Whose .debs also go into the apt repository. sid's etcd-server does not configure on bookworm (its
# sysusers.d line `u! etcd` needs systemd 257; bookworm has 252), so sid's binaries are served only
# as a release archive.
APT_SUITES = ("trixie",)
PACKAGES = ("etcd-server", "etcd-client")
BINARIES = ("etcd", "etcdctl", "etcdutl")


def parse_packages(text: str, names=PACKAGES) -> list[dict]:
    """Stanzas of a Debian ``Packages`` index for ``names`` (Package, Version, Filename, Size, SHA256)."""
    out = []
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        if fields.get("Package") in names and fields.get("Architecture") == "amd64":
            out.append({k: fields.get(k, "") for k in ("Package", "Version", "Filename", "Size", "SHA256")})
    return out


def resolve(log=print) -> list[dict]:
    """The etcd .debs of each suite, remembered for the day (sid's index is large and changes daily)."""
    memo = CACHE_DIR / f"etcd-extra-v2-{dt.datetime.now(dt.UTC):%Y%m%d}.json"
    if memo.exists():
        return json.loads(memo.read_text())
    found: list[dict] = []
    for suite in SUITES:
        url = f"{ARCHIVE}/dists/{suite}/main/binary-amd64/Packages.xz"
        try:
            with urllib.request.urlopen(url, timeout=120) as r:
                text = lzma.decompress(r.read()).decode("utf-8", errors="replace")
        except OSError as exc:
            raise LabError(f"cannot read Debian's {suite} index for extra etcd versions ({url}): {exc}") from exc
        stanzas = parse_packages(text)
        if {s["Package"] for s in stanzas} != set(PACKAGES):
            raise LabError(f"Debian {suite} has no etcd-server/etcd-client for amd64")
        found += [dict(s, Suite=suite) for s in stanzas]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f".{memo.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(found))
    tmp.replace(memo)
    log("extra etcd versions for the lab mirror: " + ", ".join(sorted({s["Version"] for s in found})))
    return found


def fetch(deb_cache: Path, download, log=print, *, suites=SUITES) -> list[Path]:
    """Download (once) the extra etcd .debs of ``suites`` into ``deb_cache``;
    ``download(uri, dest, size, 'SHA256:x')``."""
    deb_cache.mkdir(parents=True, exist_ok=True)
    out = []
    for s in resolve(log=log):
        if s["Suite"] not in suites:
            continue
        dest = deb_cache / Path(s["Filename"]).name
        if not dest.exists():
            download(f"{ARCHIVE}/{s['Filename']}", dest, int(s["Size"]), f"SHA256:{s['SHA256']}")
        out.append(dest)
    return out


def upstream_version(deb: Path) -> str:
    """``etcd-server_3.4.23-4+b4_amd64.deb`` -> ``3.4.23``."""
    return deb.name.split("_")[1].split("-")[0].split("+")[0]


def _binaries(debs: list[Path], into: Path) -> dict[str, Path]:
    for deb in debs:
        res = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
        if res.returncode != 0:
            raise LabError(f"dpkg-deb -x {deb.name}: {res.stderr[-500:]}")
    return {b: into / "usr/bin" / b for b in BINARIES if (into / "usr/bin" / b).is_file()}


def _archive(version: str, binaries: dict[str, Path], dest: Path) -> None:
    """A reproducible .tar.gz (fixed owner, mode and times) so its checksum is stable across builds."""
    top = f"etcd-v{version}-linux-amd64"
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        d = tarfile.TarInfo(top)
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for name in sorted(binaries):
            data = binaries[name].read_bytes()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.uname, info.gname = len(data), 0o755, "root", "root"
            tar.addfile(info, io.BytesIO(data))
    dest.write_bytes(buf.getvalue())


def release_archives(debs: list[Path], log=print) -> Path:
    """Release archives for every etcd version among ``debs``, built once per set of .debs; returns the
    directory holding ``v{V}/``."""
    etcd_debs = sorted(d for d in debs if d.name.split("_")[0] in PACKAGES)
    digest = hashlib.sha256("\n".join(d.name for d in etcd_debs).encode()).hexdigest()[:16]
    final = CACHE_DIR / f"etcd-releases-{digest}"
    if final.is_dir():
        return final
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    by_version: dict[str, list[Path]] = {}
    for d in etcd_debs:
        by_version.setdefault(upstream_version(d), []).append(d)
    for version, group in sorted(by_version.items()):
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
            binaries = _binaries(group, Path(work))
            if "etcd" not in binaries or "etcdctl" not in binaries:
                raise LabError(f"etcd {version}: the .debs hold no etcd/etcdctl binaries")
            vdir = tmp / f"v{version}"
            vdir.mkdir(parents=True)
            name = f"etcd-v{version}-linux-amd64.tar.gz"
            _archive(version, binaries, vdir / name)
            sha = hashlib.sha256((vdir / name).read_bytes()).hexdigest()
            (vdir / "SHA256SUMS").write_text(f"{sha}  {name}\n")
    try:
        os.rename(tmp, final)
    except OSError:  # built by another session meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"etcd release archives: {', '.join(sorted(by_version))}")
    return final


def etcd_versions(root: Path) -> list[str]:
    """Upstream etcd versions the mirror at ``root`` offers as Debian packages, oldest first."""
    found = {upstream_version(d) for d in root.glob("debian/etcd-server_*.deb")}
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))

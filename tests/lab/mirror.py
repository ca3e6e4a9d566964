"""The lab's package mirror: real Debian .debs served from the runner on the bridge address.

Lab machines have no way out (their default route leads to the runner, which forwards nothing); like an
air-gapped site they install from a mirror. The closure of
the packages kubeforge installs (minus what the image already has) is computed by the runner's own
apt against the image's dpkg status, downloaded once into /var/cache/kubeforge-lab/debs, and laid
out as a flat repository ``deb [trusted=yes] URL/debian/ ./``. When the kube simulator's package
builder exists (tests/sim/build_debs.py), its per-minor repositories are added under
URL/kubernetes/v1.NN/deb/ the way pkgs.k8s.io lays them out. Later Debian releases' etcd builds and
release archives made from them come from tests/lab/etcd_extra.py.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.lab import etcd_extra
from tests.lab.paths import CACHE_DIR, LabError
from tests.lab.procs import Proc, spawn

PACKAGES = (
    "etcd-server", "etcd-client", "containerd", "runc", "haproxy", "keepalived",
    # what kubelet/kubeadm packages depend on upstream, so simulated ones may too
    "conntrack", "iptables", "socat", "ethtool", "ebtables",
)
DEB_CACHE = CACHE_DIR / "debs"
_URI_LINE = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+) ?(?P<hash>\S*)")


def closure_uris(rootfs: Path, packages=PACKAGES) -> list[tuple[str, str, int, str]]:
    """The closure, remembered per image, package list and state of the runner's apt lists: apt
    without its binary cache takes 2-12 s to compute it, and it only changes after apt-get update."""
    lists = sorted((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in Path("/var/lib/apt/lists").glob("*") if f.is_file())
    key = hashlib.sha256(json.dumps([rootfs.name, list(packages), lists]).encode()).hexdigest()[:16]
    memo = CACHE_DIR / f"closure-{key}.json"
    if memo.exists():
        return [tuple(x) for x in json.loads(memo.read_text())]
    out = _closure_uris(rootfs, packages)
    tmp = memo.with_name(f".{memo.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(out))
    tmp.replace(memo)
    return out


def _closure_uris(rootfs: Path, packages) -> list[tuple[str, str, int, str]]:
    """(uri, filename, size, 'SHA256:…' or '') for every package apt would add to the image to install them."""
    empty = CACHE_DIR / "apt-archives"  # --print-uris leaves out whatever this dir already holds
    (empty / "partial").mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["apt-get", "-o", f"Dir::State::status={rootfs}/var/lib/dpkg/status", "-o", "Debug::NoLocking=1",
         "-o", f"Dir::Cache::archives={empty}", "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
         "install", "--print-uris", "-qq", "--no-install-recommends", *packages],
        capture_output=True, text=True,
    )
    if res.returncode != 0:
        raise LabError(
            "apt on the runner cannot resolve the lab mirror's packages (run apt-get update?):\n" + res.stderr[-1500:]
        )
    out = parse_print_uris(res.stdout)
    if not out:
        raise LabError(f"apt resolved no packages for {' '.join(packages)}")
    return out


def parse_print_uris(text: str) -> list[tuple[str, str, int, str]]:
    out = []
    for line in text.splitlines():
        m = _URI_LINE.match(line)
        if m:
            out.append((m["uri"], m["file"], int(m["size"]), m["hash"]))
    return out


def _download(uri: str, dest: Path, size: int, checksum: str) -> None:
    # apt prints no checksum for some archives (here: debian-security); the size still guards those
    algo, _, want = checksum.partition(":") if checksum else ("sha256", "", "")
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    h = hashlib.new({"md5sum": "md5"}.get(algo.lower(), algo.lower().replace("-", "")))
    with urllib.request.urlopen(uri, timeout=60) as r, open(tmp, "wb") as f:
        while chunk := r.read(1 << 20):
            h.update(chunk)
            f.write(chunk)
    if tmp.stat().st_size != size:
        got = tmp.stat().st_size
        tmp.unlink(missing_ok=True)
        raise LabError(f"{uri}: got {got} bytes, expected {size}")
    if want and h.hexdigest() != want:
        tmp.unlink(missing_ok=True)
        raise LabError(f"{uri}: checksum mismatch ({algo} {h.hexdigest()} != {want})")
    tmp.replace(dest)


def fetch_debs(rootfs: Path, log=print) -> list[Path]:
    DEB_CACHE.mkdir(parents=True, exist_ok=True)
    wanted = closure_uris(rootfs)
    missing = [w for w in wanted if not (DEB_CACHE / w[1]).exists()]
    if missing:
        log(f"downloading {len(missing)} .deb files for the lab mirror into {DEB_CACHE}")
    for uri, fname, size, checksum in missing:
        _download(uri, DEB_CACHE / fname, size, checksum)
    return [DEB_CACHE / fname for _, fname, _, _ in wanted]


def _link(src: Path, dest: Path) -> None:
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def index_flat(repo: Path) -> None:
    """Packages + Packages.gz for a flat repository (``deb [trusted=yes] URL ./``)."""
    res = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo, capture_output=True)
    if res.returncode != 0:
        raise LabError(f"dpkg-scanpackages in {repo}: {res.stderr.decode(errors='replace')[-800:]}")
    # written aside and renamed: another session may be reading or indexing the same cached repo
    tmp = repo / f".Packages.tmp-{os.getpid()}"
    tmp.write_bytes(res.stdout)
    tmp_gz = repo / f".Packages.gz.tmp-{os.getpid()}"
    tmp_gz.write_bytes(gzip.compress(res.stdout, mtime=0))
    tmp.replace(repo / "Packages")
    tmp_gz.replace(repo / "Packages.gz")


def _sim_sources_digest() -> str | None:
    spec = importlib.util.find_spec("tests.sim")
    if spec is None or importlib.util.find_spec("tests.sim.build_debs") is None:
        return None
    h = hashlib.sha256()
    for d in spec.submodule_search_locations or ():
        for f in sorted(Path(d).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(d)).encode() + b"\0" + f.read_bytes())
    # the packages also carry kubeforge's version data (kubeadm's etcd per minor)
    from tests.sim.build_debs import VERSIONS_DATA

    h.update(b"versions.yaml\0" + Path(VERSIONS_DATA).read_bytes())
    return h.hexdigest()[:16]


def build_sim_debs(log=print) -> Path | None:
    """The kube simulator's packages (when its builder exists in the tree), built once per version of
    its sources into the cache; returns the directory holding ``kubernetes/v*/deb/``."""
    digest = _sim_sources_digest()
    if digest is None:
        return None
    final = CACHE_DIR / f"sim-{digest}"
    if (final / "kubernetes").is_dir():
        for repo in final.glob("kubernetes/v*/deb"):
            if not (repo / "Packages.gz").exists():  # a cache entry from before indexes were cached
                index_flat(repo)
        return final
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # the simulator's etcd image is Debian's etcd 3.4.23 binaries from the .debs cached here
    res = subprocess.run([sys.executable, "-m", "tests.sim.build_debs", "--out", str(tmp), "--etcd-debs", str(DEB_CACHE)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"python -m tests.sim.build_debs --out DIR failed (exit {res.returncode}):\n{res.stderr[-1500:]}")
    for repo in sorted(tmp.glob("kubernetes/v*/deb")):
        index_flat(repo)
    try:
        os.rename(tmp, final)
    except OSError:  # another session built the same sources first
        shutil.rmtree(tmp, ignore_errors=True)
    for old in CACHE_DIR.glob("sim-*"):
        # builds of older simulator sources; a lab booted from one has its own hard links already
        if old != final and ".tmp-" not in old.name and time.time() - old.stat().st_mtime > 600:
            shutil.rmtree(old, ignore_errors=True)
    log(f"kube simulator packages: {', '.join(p.parent.name for p in sorted((final / 'kubernetes').glob('v*/deb')))}")
    return final


def kube_versions(root: Path) -> list[str]:
    """Kubernetes versions the mirror offers (from its kubeadm packages), oldest first."""
    found = {deb.name.split("_")[1].split("-")[0] for deb in root.glob("kubernetes/v*/deb/kubeadm_*.deb")}
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))


etcd_versions = etcd_extra.etcd_versions


def debian_repo(rootfs: Path, log=print) -> Path:
    """The indexed flat repository of Debian packages, cached per set of .deb files (dpkg-scanpackages
    is the slow part of a lab's start, and the set rarely changes)."""
    debs = fetch_debs(rootfs, log=log) + etcd_extra.fetch(DEB_CACHE, _download, log=log, suites=etcd_extra.APT_SUITES)
    digest = hashlib.sha256("\n".join(sorted(d.name for d in debs)).encode()).hexdigest()[:16]
    final = CACHE_DIR / f"debian-{digest}"
    if (final / "Packages.gz").exists():
        return final
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        _link(deb, tmp / deb.name)
    index_flat(tmp)
    try:
        os.rename(tmp, final)
    except OSError:  # built by another session meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _link_tree(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            _link(f, dest / f.name)


def lab_updates_repo() -> Path:
    """A flat repository with tests.sim.build_debs' OS test package at two versions (the lab's
    "security updates" for `kubeforge os upgrade`), built once per recipe into the cache. Machines
    see it only where a test adds ``deb [trusted=yes] URL/lab-updates/ ./`` to their sources."""
    from tests.sim import build_debs

    recipe = json.dumps([build_debs.PATCH_PACKAGE, build_debs.PATCH_VERSIONS, build_debs.PATCH_POSTINST])
    final = CACHE_DIR / f"lab-updates-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if (final / "Packages.gz").exists():
        return final
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build_debs.build_patch_debs(str(tmp))
    index_flat(tmp)
    try:
        os.rename(tmp, final)
    except OSError:  # built by another session meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def prepare(rootfs: Path, root: Path, log=print) -> Path:
    """Lay out the mirror under ``root`` (hard links into the caches); returns the directory to serve."""
    debian = debian_repo(rootfs, log=log)
    _link_tree(debian, root / "debian")
    etcd_debs = sorted(debian.glob("*.deb")) + etcd_extra.fetch(DEB_CACHE, _download, log=log)
    releases = etcd_extra.release_archives(sorted(set(etcd_debs)), log=log)
    for vdir in sorted(releases.glob("v*")):
        _link_tree(vdir, root / "etcd-releases" / vdir.name)
    sim = build_sim_debs(log=log)
    for src in sorted(sim.glob("kubernetes/v*/deb")) if sim else []:
        _link_tree(src, root / src.relative_to(sim))
    _link_tree(lab_updates_repo(), root / "lab-updates")
    return root


def serve(root: Path, address: str, port: int, log: Path) -> Proc:
    proc = spawn([sys.executable, "-m", "http.server", "--bind", address, "--directory", str(root), str(port)], log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/debian/Packages", timeout=1):
                return proc
        except OSError:
            if not proc.alive():
                break
            time.sleep(0.1)
    raise LabError(f"the lab mirror did not answer on http://{address}:{port}/ (log: {log})")

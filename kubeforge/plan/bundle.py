"""The offline bundle (``packages.source: offline``): a flat apt repository on the operator's machine.

    bundle = load_bundle(cluster)                       # reads and verifies {bundleDir}/Packages
    require_packages(bundle, {"kubeadm": "1.34.2", "containerd": None}, host="cp-1")
    files = bundle.files()                              # LocalFiles for /var/cache/kubeforge/bundle/

The ``Packages`` index (as ``dpkg-scanpackages --multiversion .`` writes it) is the bundle's table
of contents: every file it lists must exist with the listed size and SHA256 (a missing or changed
file is input-class, exit 3, naming it), and only those files and the index itself are pushed.
Anything else in the directory (etcd release archives, a stale Packages.gz) is not apt's business.
Verification runs before any host is touched; a file is hashed once per process unless it changed.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from kubeforge.errors import InputError, SafetyRefusal
from kubeforge.model import Cluster, PackageSourceKind
from kubeforge.model.files import LocalFile
from kubeforge.model.files import file_sha256 as sha256_of
from kubeforge.plan.steps import PutFileStep, slug
from kubeforge.render.packages import BUNDLE_DIR

INDEX = "Packages"
KUBE_PACKAGES = ("kubeadm", "kubelet", "kubectl")
_REQUIRED = ("Package", "Version", "Filename", "Size", "SHA256")


@dataclass(frozen=True)
class Deb:
    package: str
    version: str  # the Debian version: 1.34.2-1.1, 1:2.2.7-1+b2
    architecture: str
    filename: str  # relative to the bundle dir, normalised (no "./")
    size: int
    sha256: str
    line: int  # where its stanza starts in Packages, for messages

    def upstream_is(self, version: str) -> bool:
        """The Debian version is ``version`` plus a revision (``1.34.2`` matches ``1.34.2-1.1``)."""
        v = self.version.split(":", 1)[1] if ":" in self.version else self.version
        return v.startswith(f"{version}-")


@dataclass(frozen=True)
class Bundle:
    root: Path
    debs: tuple[Deb, ...]
    index_sha256: str
    index_size: int

    def versions(self, package: str) -> list[str]:
        return sorted({d.version for d in self.debs if d.package == package})

    def offers(self, package: str, version: str | None) -> bool:
        return any(d.package == package and (version is None or d.upstream_is(version)) for d in self.debs)

    def files(self) -> list[LocalFile]:
        """What a host needs: every listed .deb, then the index (so apt never reads an index whose
        files are not there yet). Remote paths keep the index's relative layout."""
        out = [LocalFile(f"{BUNDLE_DIR}/{d.filename}", self.root / d.filename, d.sha256, d.size,
                         source=f"bundle {d.package} {d.version}") for d in sorted(self.debs, key=lambda d: d.filename)]
        out.append(LocalFile(f"{BUNDLE_DIR}/{INDEX}", self.root / INDEX, self.index_sha256, self.index_size,
                             source="bundle index"))
        return out

    @property
    def size(self) -> int:
        return self.index_size + sum(d.size for d in self.debs)


def parse_packages(text: str, source: str) -> list[Deb]:
    """Stanzas of a Packages file -> Debs. A stanza without a needed field, a bad size or a path
    leaving the bundle dir is an InputError naming ``source:line``."""
    debs: list[Deb] = []
    fields: dict[str, str] = {}
    start = 0
    last = None
    lines = text.splitlines()
    for n, raw in enumerate([*lines, ""], 1):
        if not raw.strip():
            if fields:
                debs.append(_deb(fields, source, start))
            fields, last = {}, None
            continue
        if raw[0] in " \t":  # a continuation line (Description's body): not needed here
            if last is None:
                raise InputError(f"{source}:{n}: a continuation line outside a field")
            continue
        if ":" not in raw:
            raise InputError(f"{source}:{n}: not a 'Field: value' line: {raw[:80]!r}")
        if not fields:
            start = n
        key, value = raw.split(":", 1)
        last = key.strip()
        fields[last] = value.strip()
    return debs


def _deb(fields: dict[str, str], source: str, line: int) -> Deb:
    where = f"{source}:{line}"
    missing = [k for k in _REQUIRED if not fields.get(k)]
    if missing:
        name = fields.get("Package", "a package")
        raise InputError(f"{where}: {name} has no {', '.join(missing)}",
                         hint="write the index with `dpkg-scanpackages --multiversion . > Packages` in the bundle dir")
    name = posixpath.normpath(fields["Filename"])
    if name.startswith(("/", "../")) or name == ".." or "\n" in name:
        raise InputError(f"{where}: {fields['Package']}: Filename {fields['Filename']!r} is outside the bundle dir")
    try:
        size = int(fields["Size"])
    except ValueError:
        raise InputError(f"{where}: {fields['Package']}: Size {fields['Size']!r} is not a number") from None
    sha = fields["SHA256"].lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise InputError(f"{where}: {fields['Package']}: SHA256 {fields['SHA256']!r} is not a sha256")
    return Deb(fields["Package"], fields["Version"], fields.get("Architecture", ""), name, size, sha, line)


# (path, size, mtime_ns) -> sha256: a bundle is hashed once per process (an upgrade plans each hop).
_HASHED: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHED:  # the bundle is checked while planning and again before each push
        _HASHED[key] = sha256_of(path)
    return _HASHED[key]


def check_listed(entries: Iterable[tuple[Path, int, str, str]], problem: str, hint: str) -> None:
    """Each (path, size, sha256, who lists it) must exist with that size and sha256; otherwise one
    InputError (exit 3) naming up to five files and, for a changed one, both checksums."""
    bad = []
    for p, size, sha, lister in entries:
        if not p.is_file():
            bad.append(f"{p}: no such file ({lister} lists it)")
        elif p.stat().st_size != size:
            bad.append(f"{p}: {p.stat().st_size} bytes, {lister} says {size}")
        elif (actual := file_sha256(p)) != sha:
            bad.append(f"{p}: sha256 {actual}, {lister} says {sha}")
    if bad:
        raise InputError(f"{problem}: {'; '.join(bad[:5])}" + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""),
                         hint=hint)


def bundle_dir(cluster: Cluster) -> Path | None:
    """The bundle dir when packages come from an offline bundle, else None."""
    if cluster.packages.kind is not PackageSourceKind.OFFLINE:
        return None
    if cluster.packages.bundle_dir is None:
        raise InputError(f"{cluster.source}: packages.source offline needs bundleDir")
    return Path(cluster.packages.bundle_dir)


def load_bundle(cluster: Cluster) -> Bundle | None:
    """The verified bundle of an offline inventory (None for the other sources). Raises InputError
    (exit 3) for a missing index, a missing file or one whose size or sha256 differs from it."""
    root = bundle_dir(cluster)
    return None if root is None else read_bundle(root)


def read_bundle(root: Path) -> Bundle:
    """The verified bundle in ``root`` (load_bundle's check, for `kubeforge bundle verify`)."""
    index = root / INDEX
    if not index.is_file():
        raise InputError(f"{index}: no such file: the offline bundle needs its package index",
                         hint=f"run `dpkg-scanpackages --multiversion . > {INDEX}` in {root}")
    text = index.read_text(errors="replace")
    debs = parse_packages(text, str(index))
    if not debs:
        raise InputError(f"{index}: lists no packages", hint=f"put the .deb files in {root} and index them")
    check_listed(((root / d.filename, d.size, d.sha256, f"{INDEX} line {d.line}") for d in debs),
                 "the offline bundle does not match its index",
                 "copy the files again or rebuild the index; nothing was changed on any host")
    return Bundle(root, tuple(debs), file_sha256(index), index.stat().st_size)


def require_packages(bundle: Bundle, wanted: Mapping[str, Mapping[str, str | None]]) -> None:
    """``wanted``: host -> package -> upstream version (None: any). Raises SafetyRefusal (exit 7)
    naming every package (and version) the bundle lacks, and which hosts need it."""
    missing: dict[str, list[str]] = {}
    for host, packages in wanted.items():
        for p, v in packages.items():
            if not bundle.offers(p, v):
                missing.setdefault(f"{p} {v}" if v else p, []).append(host)
    if not missing:
        return
    parts = []
    for what, hosts in sorted(missing.items()):
        p = what.split()[0]
        has = bundle.versions(p)
        parts.append(f"{what} (needed on {', '.join(hosts)}; the bundle has {', '.join(has) if has else 'none'})")
    raise SafetyRefusal(f"the offline bundle {bundle.root} does not offer {'; '.join(parts)}",
                        hint="add those .debs to the bundle and index it again, or change the inventory's versions; "
                             "nothing was changed on any host")


def offered_kubernetes(bundle: Bundle) -> frozenset[str]:
    """The upstream versions the bundle has kubeadm, kubelet and kubectl for, all three."""
    per = []
    for p in KUBE_PACKAGES:
        per.append({(d.version.split(":", 1)[-1]).rsplit("-", 1)[0] for d in bundle.debs if d.package == p})
    return frozenset(set.intersection(*per))


def push_bundle(host: str, bundle: Bundle, *, key: str = "") -> list[PutFileStep]:
    """The bundle's debs and then its index, each streamed from disk and skipped on the host when
    its sha256 already matches (a re-run pushes nothing)."""
    return [PutFileStep(host, f, title=f"Push {f.local.name}", key=_key(key, f.path) if key else "")
            for f in bundle.files()]


def _key(key: str, path: str) -> str:
    # slug() cuts long names; the path's digest keeps two similar .deb names apart
    return f"{key}-{slug(posixpath.basename(path))}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"

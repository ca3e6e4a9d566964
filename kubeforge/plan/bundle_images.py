"""The offline bundle's images part: OCI archives listed, with their sha256, in ``images/manifest.json``.

    {bundleDir}/images/manifest.json
        {"schema": 1, "images": [{"ref": "registry.k8s.io/pause:3.10.1", "file": "pause_3.10.1.tar",
                                  "sha256": "<hex>", "size": 10240}, ...]}
    {bundleDir}/images/pause_3.10.1.tar        (an OCI archive, as `ctr images export` writes one)

    part = load_image_part(cluster)          # None: the bundle has no images/ (images come from a registry)
    require_images(part, {"cp-1": (Image, ...)})   # exit 7 naming what the bundle lacks, and for whom
    steps = import_steps("cp-1", part, images)      # push only those archives, import what is missing

Checked on the operator's machine while planning, before any host is touched: a manifest that
cannot be read, or an archive missing or differing from its size or sha256, is input-class (exit 3);
an image a host needs for this version and its roles that the manifest does not list is a safety
refusal (exit 7). On a host the archives go to /var/cache/kubeforge/images/ (kept, so a re-run
pushes nothing) and `ctr -n k8s.io images import` runs only for images containerd's k8s.io
namespace does not list yet.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as _q

from kubeforge.errors import InputError, SafetyRefusal
from kubeforge.model import Cluster
from kubeforge.model.files import LocalFile
from kubeforge.model.images import Image
from kubeforge.plan.bundle import bundle_dir, check_listed
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.transport.base import Command

IMAGES_DIR = "images"
MANIFEST = "manifest.json"
SCHEMA = 1
REMOTE_DIR = "/var/cache/kubeforge/images"
CTR = "ctr -n k8s.io"


@dataclass(frozen=True)
class Archive:
    ref: str  # registry.k8s.io/pause:3.10.1
    file: str  # relative to images/, normalised
    sha256: str
    size: int

    def local_file(self, root: Path) -> LocalFile:
        return LocalFile(f"{REMOTE_DIR}/{self.file}", root / IMAGES_DIR / self.file, self.sha256, self.size,
                         source=f"bundle image {self.ref}")


@dataclass(frozen=True)
class ImagePart:
    root: Path  # the bundle dir
    archives: tuple[Archive, ...]

    def by_ref(self) -> dict[str, Archive]:
        return {a.ref: a for a in self.archives}

    @property
    def manifest(self) -> Path:
        return self.root / IMAGES_DIR / MANIFEST


def _archive(entry: object, where: str) -> Archive:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: not an object with ref, file, sha256 and size")
    missing = [k for k in ("ref", "file", "sha256", "size") if k not in entry]
    if missing:
        raise InputError(f"{where}: has no {', '.join(missing)}")
    ref, file, sha, size = entry["ref"], entry["file"], entry["sha256"], entry["size"]
    if not isinstance(ref, str) or ":" not in ref.rsplit("/", 1)[-1]:
        raise InputError(f"{where}: ref {ref!r} is not an image reference with a tag (name:tag)")
    if not isinstance(file, str) or not file:
        raise InputError(f"{where}: file {file!r} is not a file name")
    name = posixpath.normpath(file)
    if name.startswith(("/", "../")) or name == ".." or "\n" in name:
        raise InputError(f"{where}: file {file!r} is outside the bundle's images/ directory")
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
        raise InputError(f"{where}: sha256 {sha!r} is not a sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InputError(f"{where}: size {size!r} is not a byte count")
    return Archive(ref, name, sha.lower(), size)


def parse_manifest(text: str, source: str) -> tuple[Archive, ...]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("images"), list):
        raise InputError(f"{source}: expected {{\"schema\": {SCHEMA}, \"images\": [...]}}")
    archives = tuple(_archive(e, f"{source}: images[{i}]") for i, e in enumerate(doc["images"]))
    seen: dict[str, int] = {}
    for i, a in enumerate(archives):
        if a.ref in seen:
            raise InputError(f"{source}: images[{i}]: {a.ref} is listed twice (also images[{seen[a.ref]}])")
        seen[a.ref] = i
    return archives


def load_image_part(cluster: Cluster) -> ImagePart | None:
    """The verified images part of an offline bundle; None when packages are not offline or the
    bundle has no ``images/`` directory. InputError (exit 3) for an unreadable manifest and for any
    archive missing or not matching its size and sha256 (all of them named, up to five)."""
    root = bundle_dir(cluster)
    return None if root is None else read_image_part(root)


def read_image_part(root: Path) -> ImagePart | None:
    """The verified images part of the bundle in ``root``; None without ``images/``."""
    if not (root / IMAGES_DIR).is_dir():
        return None
    manifest = root / IMAGES_DIR / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such file: the bundle's images/ directory needs its manifest",
                         hint="list every archive with its ref, file, sha256 and size (docs/airgapped.md)")
    archives = parse_manifest(manifest.read_text(errors="replace"), str(manifest))
    check_listed(((root / IMAGES_DIR / a.file, a.size, a.sha256, f"{MANIFEST} for {a.ref}") for a in archives),
                 "the offline bundle's images do not match their manifest",
                 "copy the archives again or rebuild images/manifest.json; nothing was changed on any host")
    return ImagePart(root, archives)


def require_images(part: ImagePart, wanted: Mapping[str, Iterable[Image]]) -> None:
    """``wanted``: host -> images it needs. SafetyRefusal (exit 7) naming every image the bundle
    lacks and the hosts that need it."""
    have = part.by_ref()
    missing: dict[str, list[str]] = {}
    for host, images in wanted.items():
        for image in images:
            if image.ref not in have:
                missing.setdefault(image.ref, []).append(host)
    if missing:
        parts = [f"{ref} (needed on {', '.join(hosts)})" for ref, hosts in sorted(missing.items())]
        raise SafetyRefusal(f"the offline bundle {part.root} has no image archive for {'; '.join(parts)}",
                            hint="add those OCI archives to images/ and list them in images/manifest.json, or change "
                                 "the inventory's Kubernetes version; nothing was changed on any host")


def import_script(archives: Iterable[Archive], directory: str = REMOTE_DIR) -> str:
    """Import each archive (from ``directory``) unless containerd's k8s.io namespace lists its image
    already; fail when an import did not produce the image the manifest names."""
    # grep without -q: under the transport's pipefail, a grep that stops at the first match kills
    # the writer with SIGPIPE and fails the pipeline (seen in the lab as a spurious "did not hold")
    lines = [f"have=$({CTR} images ls -q)"]
    for a in archives:
        ref, path = _q(a.ref), _q(f"{directory}/{a.file}")
        lines.append(
            f"if printf '%s\\n' \"$have\" | grep -xF {ref} >/dev/null; then echo {ref}': already present'; else\n"
            f"  {CTR} images import {path} >/dev/null\n"
            f"  {CTR} images ls -q | grep -xF {ref} >/dev/null || {{ echo {path}' did not hold '{ref} >&2; exit 1; }}\n"
            f"  echo {ref}': imported'\n"
            "fi"
        )
    return "\n".join(lines) + "\n"


def present_guard(refs: Iterable[str]) -> str:
    checks = [f"printf '%s\\n' \"$have\" | grep -xF {_q(r)} >/dev/null" for r in refs]
    return f"have=$({CTR} images ls -q) && " + " && ".join(checks)


def import_steps(host: str, part: ImagePart, images: Iterable[Image], *, key: str = "") -> list:
    """Push the archives of ``images`` (skipped where the host's copy matches) and import what
    containerd does not have; [] when ``images`` is empty. ``key``: a prefix for the step keys
    (an upgrade journals the same steps once per hop)."""
    have = part.by_ref()
    archives = sorted({have[i.ref] for i in images}, key=lambda a: a.ref)
    if not archives:
        return []
    steps: list = [PutFileStep(host, a.local_file(part.root), title=f"Push image {a.ref}",
                               key=f"{key}push-image-{_key(a)}") for a in archives]
    steps.append(RunStep(
        host, Command(script=import_script(archives), sudo=True, timeout=900, description="import bundle images"),
        f"Import {len(archives)} image{'s' if len(archives) != 1 else ''} into containerd (k8s.io)",
        unless=Command(script=present_guard(a.ref for a in archives), sudo=True), key=f"{key}import-images"))
    return steps


def _key(a: Archive) -> str:
    return a.sha256[:16]


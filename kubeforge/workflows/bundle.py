"""`kubeforge bundle verify DIR`: an offline bundle checked exactly as `up` checks it (the .deb index
and the images manifest: every listed file present with its size and sha256, exit 3 otherwise),
then what it holds per Kubernetes version and role, with sizes.

    doc = verify_bundle(Path("bundle"))    # a plain dict: the -o json document

Without an inventory the images are matched to a version and role by their name and tag (the
repository is the inventory's business): ``<anything>/kube-apiserver:v1.34.2`` is the control
plane's at 1.34.2, ``.../pause:3.10.1`` every node's at each version whose minor pins that tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubeforge.errors import InputError, UsageError
from kubeforge.model import Cluster
from kubeforge.model.cluster import Role
from kubeforge.model.images import OPTIONAL_COMPONENTS, ROLE_COMPONENTS, component_tags
from kubeforge.model.versions import KubeVersion, VersionError, parse_kube
from kubeforge.plan.bundle import INDEX, KUBE_PACKAGES, offered_kubernetes, read_bundle
from kubeforge.plan.bundle_images import IMAGES_DIR, MANIFEST, read_image_part


def _version(text: str) -> KubeVersion | None:
    try:
        return parse_kube(text)
    except VersionError:
        return None


def _upstream(deb_version: str) -> str:
    return deb_version.split(":", 1)[-1].rsplit("-", 1)[0]


def verify_bundle(root: Path) -> dict[str, Any]:
    bundle = read_bundle(root)  # InputError (exit 3): no index, a file missing or changed
    part = read_image_part(root)
    versions = sorted(v for s in offered_kubernetes(bundle) if (v := _version(s)) is not None)
    kube_debs = [d for d in bundle.debs if d.package in KUBE_PACKAGES]
    out_versions: dict[str, Any] = {}
    claimed: set[str] = set()
    for v in versions:
        debs = [d for d in kube_debs if _upstream(d.version) == str(v)]
        entry: dict[str, Any] = {"packages": [{"package": d.package, "version": d.version, "file": d.filename,
                                               "size": d.size} for d in sorted(debs, key=lambda d: d.package)]}
        if part is not None:
            try:
                tags = component_tags(v)
            except VersionError as exc:
                entry["imagesUnknown"] = str(exc)
            else:
                entry["images"] = {}
                for role, components in ROLE_COMPONENTS.items():
                    found, missing = [], []
                    for c in components:
                        hits = [a for a in part.archives
                                if a.ref.rsplit("/", 1)[-1] == f"{c}:{tags[c]}"
                                or (c == "coredns" and a.ref.endswith(f"/coredns/coredns:{tags[c]}"))]
                        found += hits
                        if not hits:
                            missing.append(f"{c}:{tags[c]}" + (f" ({OPTIONAL_COMPONENTS[c]})" if c in OPTIONAL_COMPONENTS else ""))
                    claimed.update(a.ref for a in found)
                    entry["images"][role] = {"images": [{"ref": a.ref, "file": a.file, "size": a.size} for a in found],
                                             "missing": missing, "size": sum(a.size for a in found)}
        entry["size"] = sum(d.size for d in debs) + sum(r["size"] for r in entry.get("images", {}).values())
        out_versions[str(v)] = entry
    versioned = {d.filename for d in kube_debs if (_version(_upstream(d.version)) in versions)}
    other = [d for d in bundle.debs if d.filename not in versioned]
    images_size = sum(a.size for a in part.archives) if part is not None else 0
    return {
        "bundle": str(root),
        "ok": True,
        "index": {"file": INDEX, "packages": len(bundle.debs), "size": bundle.size},
        "images": None if part is None else {"manifest": f"{IMAGES_DIR}/{MANIFEST}", "archives": len(part.archives),
                                             "size": images_size},
        "kubernetes": out_versions,
        "otherPackages": [{"package": d.package, "version": d.version, "file": d.filename, "size": d.size}
                          for d in sorted(other, key=lambda d: (d.package, d.version))],
        "otherImages": [{"ref": a.ref, "file": a.file, "size": a.size}
                        for a in sorted(part.archives, key=lambda a: a.ref) if a.ref not in claimed] if part else [],
        "size": bundle.size + images_size,
    }


# --- bundle create --from-dir --------------------------------------------------------------------------

def image_name_of(archive: Path) -> str:
    """The image an OCI archive holds, as `ctr images import` names it (index.json's
    io.containerd.image.name annotation). InputError when the file is not such an archive."""
    import json
    import tarfile

    try:
        with tarfile.open(archive) as t:
            member = t.extractfile("index.json")
            index = json.loads(member.read()) if member is not None else {}
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise InputError(f"{archive}: not an OCI archive with an index.json ({exc})",
                         hint="export images with `ctr images export FILE REF`") from None
    names = {m.get("annotations", {}).get("io.containerd.image.name") for m in index.get("manifests", [])} - {None}
    if len(names) != 1:
        raise InputError(f"{archive}: index.json names {len(names)} images (io.containerd.image.name); "
                         "a bundle archive holds exactly one", hint="export one image per file")
    return names.pop()


def create_bundle(source: Path, out: Path) -> dict[str, Any]:
    """A bundle directory in ``out`` (new or empty) from ``source``: every .deb (indexed by
    dpkg-scanpackages into Packages), every OCI archive (*.tar) under images/ with
    images/manifest.json (ref, file, sha256, size), etcd release archives and SHA256SUMS as they
    are. Then checked as `bundle verify` checks it; returns that document."""
    import json
    import shutil
    import subprocess

    from kubeforge.model.files import file_sha256

    if not source.is_dir():
        raise InputError(f"{source}: not a directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty directory", hint="name a new directory")
    debs = sorted(source.glob("*.deb"))
    if not debs:
        raise InputError(f"{source}: no .deb files", hint="put the packages (kubeadm, kubelet, kubectl, containerd...) there")
    if shutil.which("dpkg-scanpackages") is None:
        raise InputError("dpkg-scanpackages is not installed on this machine", hint="apt-get install dpkg-dev")
    archives = {a: image_name_of(a) for a in sorted(source.glob("*.tar"))}
    seen: dict[str, Path] = {}
    for a, ref in archives.items():
        if ref in seen:
            raise InputError(f"{a}: holds {ref}, as {seen[ref]} does", hint="keep one archive per image")
        seen[ref] = a
    out.mkdir(parents=True, exist_ok=True)
    for f in [*debs, *source.glob("etcd-v*.tar.gz"), *source.glob("SHA256SUMS")]:
        shutil.copyfile(f, out / f.name)
    res = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=out, capture_output=True, timeout=600)
    if res.returncode != 0:
        raise InputError(f"dpkg-scanpackages failed in {out}: {res.stderr.decode(errors='replace').strip()[-300:]}")
    (out / INDEX).write_bytes(res.stdout)
    if archives:
        images = out / IMAGES_DIR
        images.mkdir()
        entries = []
        for a, ref in sorted(archives.items(), key=lambda kv: kv[1]):
            name = ref.rsplit("/", 1)[-1].replace(":", "_") + ".tar"
            shutil.copyfile(a, images / name)
            entries.append({"ref": ref, "file": name, "sha256": file_sha256(images / name),
                            "size": (images / name).stat().st_size})
        (images / MANIFEST).write_text(json.dumps({"schema": 1, "images": entries}, indent=1) + "\n")
    return verify_bundle(out)


# --- bundle create -i INVENTORY: fetched from the inventory's own sources ----------------------------

def create_from_sources(cluster: Cluster, out: Path, *, versions: list[KubeVersion], roles: tuple[Role, ...],
                        debs_from: Path | None = None, dpkg_status: Path | None = None,
                        mirror: str | None = None) -> dict[str, Any]:
    """A bundle in ``out`` (new or empty) for ``versions`` x ``roles``: every image those roles need,
    pulled from the inventory's registry/mirrors (kubeforge.workflows.bundle_fetch); etcd's release
    archive and SHA256SUMS when the inventory takes etcd from archives; the .debs from ``debs_from``, or else downloaded from the inventory's apt mirror with
    their dependency closure (minus what ``dpkg_status`` says a host already has); from ``mirror``
    instead when given (the site's own inventory names the bundle, not a mirror).
    Everything is written to a directory beside ``out`` and renamed into place only when the
    assembled bundle verifies: a failure leaves ``out`` as it was. Returns verify's document with
    ``fetched`` (what came from where)."""
    import os
    import shutil
    import tempfile

    from kubeforge.pki.registry import read_registry_access
    from kubeforge.workflows.bundle_fetch import (
        RegistryClient,
        apt_sources,
        archive_name,
        download_debs,
        wanted_images,
        wanted_packages,
    )

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty directory", hint="name a new directory")
    if debs_from is not None and not debs_from.is_dir():
        raise InputError(f"{debs_from}: not a directory")
    if debs_from is not None and not any(debs_from.glob("*.deb")):
        raise InputError(f"{debs_from}: no .deb files", hint="leave out --from-dir to fetch them from the apt mirror")
    if dpkg_status is not None and not dpkg_status.is_file():
        raise InputError(f"{dpkg_status}: no such file (--dpkg-status: a host's /var/lib/dpkg/status)")
    access = read_registry_access(cluster)  # exit 3 before any download: an unset password, a bad CA
    requests = wanted_packages(cluster, versions, roles)
    sources = apt_sources(cluster, versions, mirror) if debs_from is None and requests else []  # exit 2: no mirror
    apt_from = (mirror or cluster.packages.mirror_url or "").rstrip("/")
    wanted = wanted_images(cluster, versions, roles)
    if not requests and not wanted:
        raise UsageError(f"hosts of roles {', '.join(r.value for r in roles)} run no images and install no packages "
                         "in this inventory: nothing to bundle", hint="name node roles in --roles")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        staging, work = tmp / "src", tmp / "work"
        staging.mkdir()
        client = RegistryClient(cluster, access)
        fetched = []
        for image, need in wanted.items():
            got = client.fetch(image, staging / archive_name(image), work)
            fetched.append({**got, "roles": sorted(need)})
        etcd = _etcd_archives(cluster, staging, roles)
        if debs_from is not None:
            debs = []
            for f in sorted(debs_from.glob("*.deb")):
                shutil.copyfile(f, staging / f.name)
                debs.append(f.name)
        else:
            debs = download_debs(apt_from, requests, sources, tmp / "apt", staging, dpkg_status=dpkg_status)
        doc = create_bundle(staging, tmp / "bundle")
        if out.exists():
            out.rmdir()  # empty: checked before anything was fetched
        os.replace(tmp / "bundle", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    doc["bundle"] = str(out)
    doc["fetched"] = {"images": fetched, "etcd": etcd,
                      "packages": {"from": str(debs_from) if debs_from is not None else apt_from,
                                   "requests": [{p: v for p, v in r.items()} for r in requests], "debs": debs}}
    return doc


def _etcd_archives(cluster: Cluster, staging: Path, roles: tuple[Role, ...]) -> list[str]:
    """etcd's release archive and SHA256SUMS into ``staging`` when the inventory takes etcd from
    archives and one of ``roles`` runs it (external members; control planes carry etcdctl beside a
    stacked etcd), fetched and checked as `up` does, through its cache; [] with Debian packages."""
    import dataclasses
    import shutil

    from kubeforge.model import EtcdTopology, PackageSourceKind
    from kubeforge.plan.etcd.source import SUMS_NAME, archive_for, cached_sums
    from kubeforge.workflows.etcd.sources import prepare_etcd_sources

    if cluster.packages.kind is PackageSourceKind.OFFLINE and cluster.etcd.release_url is None:
        # the site's inventory: its hosts take etcd from the bundle; the connected side from upstream
        cluster = dataclasses.replace(cluster, packages=dataclasses.replace(cluster.packages,
                                                                            kind=PackageSourceKind.UPSTREAM))
    archive = archive_for(cluster)
    runs = Role.ETCD if cluster.etcd.topology is EtcdTopology.EXTERNAL else Role.CONTROL_PLANE
    if archive is None or archive.offline or runs not in roles:
        return []
    out = []
    for prepared in prepare_etcd_sources(cluster, [cluster.etcd.version]):
        shutil.copyfile(prepared.path, staging / prepared.archive.name)
        sums = cached_sums(cluster, prepared.archive)
        if sums.is_file():
            shutil.copyfile(sums, staging / SUMS_NAME)
        out.append(prepared.archive.name)
    return out

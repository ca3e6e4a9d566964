"""`kubeforge bundle create -i INVENTORY`: the connected side fetches what an air-gapped site needs
from the inventory's own sources, then assembles it as `--from-dir` does.

    wanted = wanted_images(cluster, versions, roles)     # Image -> the roles that need it
    fetch_image(client, image, dest_dir / "pause_3.10.1.tar")

Images come over the registry v2 HTTP API, from where containerd on the hosts would pull them:
each ``spec.images.mirrors`` endpoint of the image's registry in order, then the registry itself.
A manifest list / OCI index is resolved to its linux/amd64 manifest; the manifest, its config and
every layer are checked against their sha256 digests while they stream to disk; the result is an
OCI image-layout archive whose index.json names the image as `ctr images import` reads it
(``io.containerd.image.name``) - exactly what kubeforge.workflows.bundle.image_name_of reads back.
Its target is what the tag (or pinned digest) resolves to, the list itself for a multi-platform
image as a pull records it, with only linux/amd64's content beside it.

Credentials come from the inventory (passwordFile / passwordEnv, read by kubeforge.pki.registry):
sent only to the host they belong to, only after a 401 asks for them (Basic, or a Bearer token from
the realm the registry names), never in argv, logs or messages; a redirect to another host (a blob
store) goes without them. The inventory's CA is trusted in addition to this machine's.

Failures name the registry endpoint and the image:
- no connection, or TLS that cannot be verified (an unknown CA): exit 5 (unreachable: as with an
  SSH host whose key does not match, the other side could not be reached as the one we trust);
- the registry answered but refused the credentials (401/403), lacks the image (404), or served
  bytes that differ from their digest: exit 4 (a check of the source failed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kubeforge.errors import CheckFailed, TransportError, UsageError
from kubeforge.facts.preflight.images import registry_of
from kubeforge.model import Cluster, Host
from kubeforge.model.cluster import Role
from kubeforge.model.images import Image, RegistryAccess, images_for_host
from kubeforge.model.versions import KubeVersion

PLATFORM = {"os": "linux", "architecture": "amd64"}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
LISTS = frozenset({OCI_INDEX, DOCKER_LIST})
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
CHUNK = 1 << 20
TIMEOUT = 60.0
DEFAULT_SERVERS = {"docker.io": "https://registry-1.docker.io"}
NODE_ROLES = (Role.CONTROL_PLANE, Role.WORKER)


# --- what to fetch ------------------------------------------------------------------------------------

def parse_roles(text: str | None, cluster: Cluster) -> tuple[Role, ...]:
    """``control-plane,worker`` -> Roles; default: every role a host of the inventory has."""
    if text is None:
        return tuple(r for r in Role if any(r in h.roles for h in cluster.hosts))
    out = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        try:
            out.append(Role(word))
        except ValueError:
            raise UsageError(f"--roles: unknown role {word!r}",
                             hint=f"one or more of {', '.join(r.value for r in Role)}, comma-separated") from None
    if not out:
        raise UsageError("--roles: no role named")
    return tuple(dict.fromkeys(out))


def wanted_images(cluster: Cluster, versions: Iterable[KubeVersion],
                  roles: Iterable[Role]) -> dict[Image, set[str]]:
    """Image -> the roles (``control-plane``, ``worker``) that need it at any of ``versions``, as
    images_for_host decides for a host of that one role (etcd members and balancers run no images)."""
    out: dict[Image, set[str]] = {}
    for role in roles:
        if role not in NODE_ROLES:
            continue
        host = one_role_host(cluster, role)
        for v in versions:
            for image in images_for_host(cluster, host, v):
                out.setdefault(image, set()).add(role.value)
    return dict(sorted(out.items()))


def archive_name(image: Image) -> str:
    return image.ref.rsplit("/", 1)[-1].replace(":", "_").replace("@", "_") + ".tar"


# --- the registry client -------------------------------------------------------------------------------

class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the Authorization header to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


class RegistryClient:
    """Pulls over the registry v2 API from the operator's machine, with the inventory's CA and
    credentials (``access``) and mirrors."""

    def __init__(self, cluster: Cluster, access: RegistryAccess | None, timeout: float = TIMEOUT) -> None:
        self.mirrors = dict(cluster.images.mirrors)
        self.access = access
        self.timeout = timeout
        ctx = ssl.create_default_context()
        if access is not None and access.ca_pem:
            ctx.load_verify_locations(cadata=access.ca_pem.decode())
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), _SameHostAuth())
        self._auth: dict[tuple[str, str], str] = {}  # (endpoint, repository) -> Authorization value

    def endpoints(self, registry: str) -> list[str]:
        own = DEFAULT_SERVERS.get(registry, f"https://{registry}")
        return list(dict.fromkeys([*(u.rstrip("/") for u in self.mirrors.get(registry, ())), own]))

    # one request, with the 401 dance; returns the open response
    def _open(self, endpoint: str, repo: str, path: str, accept: str | None, what: str):
        url = f"{endpoint}/v2/{repo}/{path}"
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            if (endpoint, repo) in self._auth:
                headers["Authorization"] = self._auth[(endpoint, repo)]
            try:
                return self.opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0 and (endpoint, repo) not in self._auth:
                    challenge = exc.headers.get("WWW-Authenticate", "")
                    exc.close()
                    token = self._answer(endpoint, repo, challenge)
                    if token is not None:
                        self._auth[(endpoint, repo)] = token
                        continue
                    raise CheckFailed(f"registry {endpoint}: {what}: 401 Unauthorized and the inventory has no "
                                      f"credentials for {urllib.parse.urlsplit(endpoint).netloc}",
                                      hint="add spec.images.credentials for that registry") from None
                code, reason = exc.code, _registry_error(exc)
                exc.close()
                if code in (401, 403):
                    raise CheckFailed(f"registry {endpoint}: {what}: {code} {reason} (the credentials were refused)",
                                      hint="check spec.images.credentials (username and password source)") from None
                raise _NotThere(f"{code} {reason}") from None
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                why = getattr(exc, "reason", None) or exc
                raise TransportError(endpoint, f"registry unreachable from this machine ({what}): {why}",
                                     hint="is it reachable, and does spec.images.ca sign its certificate?") from None
        raise AssertionError("unreachable")

    def _answer(self, endpoint: str, repo: str, challenge: str) -> str | None:
        netloc = urllib.parse.urlsplit(endpoint).netloc
        basic = self.access.auth_for(netloc) if self.access is not None else None
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            return basic.reveal() if basic is not None else None
        if scheme.lower() != "bearer":
            return None
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if "realm" not in fields:
            return None
        query = {"scope": f"repository:{repo}:pull", **({"service": fields["service"]} if "service" in fields else {})}
        headers = {"Authorization": basic.reveal()} if basic is not None else {}
        req = urllib.request.Request(f"{fields['realm']}?{urllib.parse.urlencode(query)}", headers=headers)
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                doc = json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise CheckFailed(f"registry {endpoint}: no token from {fields['realm']}: "
                              f"{getattr(exc, 'code', '') or getattr(exc, 'reason', None) or exc}") from None
        token = doc.get("token") or doc.get("access_token")
        return f"Bearer {token}" if token else None

    def fetch(self, image: Image, dest: Path, work: Path) -> dict[str, Any]:
        """``image`` into the OCI archive ``dest``; its blobs pass through ``work``. Tries each
        endpoint in containerd's order; returns {ref, from, digest}."""
        registry = registry_of(image.ref)
        repo = image.name[len(registry) + 1:] if image.name.startswith(registry + "/") else image.name
        if registry == "docker.io" and "/" not in repo:
            repo = f"library/{repo}"
        tried = []
        for endpoint in self.endpoints(registry):
            try:
                desc = self._fetch_from(endpoint, repo, image, work)
            except _NotThere as exc:
                tried.append(f"{endpoint}: {exc}")
                continue
            write_oci_archive(dest, image, desc, work)
            return {"ref": image.ref, "from": endpoint, "digest": desc["digest"]}
        raise CheckFailed(f"image {image.ref} not found: {'; '.join(tried)}",
                          hint="push it there (or a mirror of it), or check the version and spec.images")

    def _fetch_from(self, endpoint: str, repo: str, image: Image, work: Path) -> dict[str, Any]:
        """The image's blobs into work/blobs; returns the descriptor its archive names: the manifest
        list itself when the tag or digest is one (as a pull records it, with only the
        linux/amd64 manifest's content beside it), else the manifest with its config's platform."""
        what = f"image {image.ref}"
        (work / "blobs").mkdir(parents=True, exist_ok=True)
        body, media_type = self._manifest(endpoint, repo, image.tag, what)
        if image.tag.startswith("sha256:"):
            _check(body, image.tag, f"{endpoint}: {what}: manifest")
        top: tuple[bytes, str] | None = None
        if media_type in LISTS:
            chosen = [m for m in json.loads(body).get("manifests", [])
                      if {k: m.get("platform", {}).get(k) for k in PLATFORM} == PLATFORM]
            if not chosen:
                raise CheckFailed(f"registry {endpoint}: {what} has no {PLATFORM['os']}/{PLATFORM['architecture']} manifest")
            top = body, media_type
            body, media_type = self._manifest(endpoint, repo, chosen[0]["digest"], what)
            _check(body, chosen[0]["digest"], f"{endpoint}: {what}: manifest")
        manifest = json.loads(body)
        blobs = [manifest["config"], *manifest.get("layers", [])]
        for blob in blobs:
            self._blob(endpoint, repo, blob, work / "blobs" / blob["digest"].split(":", 1)[1], what)
        digests = [b["digest"] for b in blobs]
        digest = _store(work, body)
        if top is not None:
            return {"mediaType": top[1], "digest": _store(work, top[0]), "size": len(top[0]), "platform": None,
                    "blobs": [*digests, digest]}
        try:  # the platform the image says it is for (a single-platform tag has no list to say it)
            config = json.loads((work / "blobs" / manifest["config"]["digest"].split(":", 1)[1]).read_bytes())
            platform = {"os": config["os"], "architecture": config["architecture"]}
        except (ValueError, KeyError, TypeError):
            platform = dict(PLATFORM)
        return {"mediaType": media_type, "digest": digest, "size": len(body), "platform": platform, "blobs": digests}

    def _manifest(self, endpoint: str, repo: str, reference: str, what: str) -> tuple[bytes, str]:
        with self._open(endpoint, repo, f"manifests/{reference}", ACCEPT, what) as r:
            body = r.read()
            media_type = (r.headers.get("Content-Type") or "").split(";")[0].strip()
            expected = r.headers.get("Docker-Content-Digest")
        media_type = json.loads(body).get("mediaType") or media_type
        if expected and expected.startswith("sha256:"):
            _check(body, expected, f"{endpoint}: {what}: manifest")
        return body, media_type

    def _blob(self, endpoint: str, repo: str, desc: Mapping[str, Any], dest: Path, what: str) -> None:
        expected = desc["digest"]
        if dest.is_file() and _file_digest(dest) == expected:
            return
        h = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        try:
            with self._open(endpoint, repo, f"blobs/{expected}", None, what) as r, tmp.open("wb") as f:
                for chunk in iter(lambda: r.read(CHUNK), b""):
                    h.update(chunk)
                    f.write(chunk)
        except _NotThere as exc:
            raise CheckFailed(f"registry {endpoint}: {what}: blob {expected}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise TransportError(endpoint, f"registry: {what}: blob {expected}: {exc}") from None
        actual, size = "sha256:" + h.hexdigest(), tmp.stat().st_size
        if actual != expected or size != desc.get("size", size):
            tmp.unlink()
            raise CheckFailed(f"registry {endpoint}: {what}: blob {expected} arrived as {actual} ({size} bytes, "
                              f"{desc.get('size', '?')} expected): refused")
        tmp.replace(dest)


class _NotThere(Exception):
    """The endpoint answered: no such manifest (404 and the like); the next endpoint may have it."""


def _registry_error(exc: urllib.error.HTTPError) -> str:
    try:
        errors = json.loads(exc.read(4096)).get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or str(exc.reason)
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)


def _store(work: Path, body: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    (work / "blobs" / digest[7:]).write_bytes(body)
    return digest


def _check(body: bytes, expected: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(body).hexdigest()
    if actual != expected:
        raise CheckFailed(f"registry {what} is {actual}, not {expected}: refused")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def write_oci_archive(dest: Path, image: Image, desc: Mapping[str, Any], work: Path) -> None:
    """An OCI image layout (tar) of one image: oci-layout, index.json naming it, its blobs."""
    annotations = {"io.containerd.image.name": image.ref}
    if not image.tag.startswith("sha256:"):
        annotations["org.opencontainers.image.ref.name"] = image.tag
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
                            "annotations": annotations, **({"platform": desc["platform"]} if desc["platform"] else {})}]}
    entries: list[tuple[str, bytes | Path]] = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                                               ("index.json", json.dumps(index, sort_keys=True).encode())]
    for digest in dict.fromkeys([*desc["blobs"], desc["digest"]]):
        entries.append((f"blobs/sha256/{digest[7:]}", work / "blobs" / digest[7:]))
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 0
            if isinstance(data, bytes):
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                info.size = data.stat().st_size
                with data.open("rb") as f:
                    t.addfile(info, f)
    tmp.replace(dest)


# --- the .debs: apt on this machine, under a private configuration ---------------------------------------

def one_role_host(cluster: Cluster, role: Role) -> Host:
    """A host of the inventory with ``role`` (any, if none has it) holding that role alone."""
    like = next((h for h in cluster.hosts if role in h.roles), cluster.hosts[0])
    return dataclasses.replace(like, roles=frozenset({role}))


def wanted_packages(cluster: Cluster, versions: Iterable[KubeVersion], roles: Iterable[Role]) -> list[dict[str, str | None]]:
    """One apt request per Kubernetes version: package -> exact upstream version (None: what the
    mirror has), what hosts of ``roles`` install (kubeforge.plan.up.install_packages), with
    kubeadm/kubelet/kubectl at that version. [] when the roles install nothing."""
    from kubeforge.plan.up.install_packages import KUBE_PACKAGES, host_packages

    merged: dict[str, str | None] = {}
    for role in roles:
        merged.update(host_packages(cluster, one_role_host(cluster, role)))
    if not merged:
        return []
    if not any(p in merged for p in KUBE_PACKAGES):
        return [merged]
    return [{**merged, **{p: str(v) for p in KUBE_PACKAGES if p in merged}} for v in versions]


def apt_sources(cluster: Cluster, versions: Iterable[KubeVersion], mirror: str | None = None) -> list[str]:
    """The ``deb`` lines `up` writes on a node for each version (the mirror's Kubernetes repository per
    minor and its Debian repository), without duplicates; ``mirror`` (--mirror) instead of the
    inventory's packages.source, laid out as packages.source: mirror expects."""
    from kubeforge.model import PackageSourceKind
    from kubeforge.render.context import cluster_context
    from kubeforge.render.packages import DEBIAN_MIRROR_LIST, KUBERNETES_LIST, render_packages

    if mirror is not None:
        cluster = dataclasses.replace(cluster, packages=dataclasses.replace(
            cluster.packages, kind=PackageSourceKind.MIRROR, mirror_url=mirror.rstrip("/")))
    if cluster.packages.kind is not PackageSourceKind.MIRROR:
        raise UsageError(f"{cluster.source}: packages.source is {cluster.packages.kind}: bundle create fetches .debs "
                         "only from an apt mirror laid out as packages.source: mirror expects",
                         hint="name one with --mirror URL, or give the .debs with --from-dir DIR")
    node = one_role_host(cluster, Role.WORKER)
    lines: list[str] = []
    for v in versions:
        for f in render_packages(cluster_context(cluster, v), node, v):
            if f.path in (KUBERNETES_LIST, DEBIAN_MIRROR_LIST):
                lines += [line for line in f.content.decode().splitlines() if line.startswith("deb ")]
    return list(dict.fromkeys(lines))


def download_debs(mirror: str, requests: list[dict[str, str | None]], sources: list[str], work: Path,
                  dest: Path, *, dpkg_status: Path | None = None) -> list[str]:
    """``apt-get install --download-only`` of each request into ``dest``, with apt's own
    configuration dirs, lists, cache and dpkg status in ``work``: the operator's apt state is never
    read for packages nor written. The status is ``dpkg_status`` (a target host's
    /var/lib/dpkg/status: what it has is not fetched again) or empty (the whole dependency closure).
    Returns the .deb file names. A mirror that cannot be read: exit 5; a package or version it
    lacks: exit 4, with apt's own lines."""
    import shutil
    import subprocess

    if shutil.which("apt-get") is None:
        raise UsageError("apt-get is not installed on this machine", hint="give the .debs with --from-dir DIR")
    for d in ("lists/partial", "archives/partial", "parts", "cache"):
        (work / d).mkdir(parents=True, exist_ok=True)
    (work / "sources.list").write_text("\n".join(sources) + "\n")
    status = work / "status"
    if dpkg_status is not None:
        shutil.copyfile(dpkg_status, status)
    else:
        status.write_text("")
    opts = ["-o", f"Dir::Etc::SourceList={work / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={work / 'parts'}",
            "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
            "-o", f"Dir::Cache::archives={work / 'archives'}", "-o", f"Dir::State::status={status}",
            "-o", f"Dir::Etc::Preferences={work / 'preferences'}", "-o", f"Dir::Etc::PreferencesParts={work / 'parts'}",
            "-o", "APT::Architecture=amd64", "-o", "APT::Architectures::=amd64", "-o", "Debug::NoLocking=1",
            "-o", "Acquire::Languages=none", "-o", "APT::Install-Recommends=false", "-o", "Acquire::Retries=2"]
    import os

    # apt's messages in English (they are parsed), the operator's proxy settings kept
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
           **{k: v for k, v in os.environ.items() if k.lower() in ("http_proxy", "https_proxy", "no_proxy")}}

    def apt(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", "-q", *opts, *argv], capture_output=True, text=True, env=env, timeout=1800,
                              check=False)

    res = apt("update")
    # apt-get update exits 0 when an index could not be fetched: its "W: Failed to fetch" says so
    # (the "Err:" lines of a flat repository's absent compressed indexes are not failures)
    errors = [line for line in res.stderr.splitlines() if line.startswith(("E:", "W: Failed to fetch"))]
    if res.returncode != 0 or errors:
        raise TransportError(mirror, "apt mirror unreachable or unreadable from this machine: "
                                     + " / ".join(errors[-3:] or [res.stderr.strip()[-300:]]),
                             hint="check packages.mirrorURL; nothing was written to --out")
    for request in requests:
        specs = [f"{p}={v}-*" if v else p for p, v in request.items()]
        res = apt("install", "-y", "--download-only", "--no-install-recommends", *specs)
        if res.returncode != 0:
            why = [line for line in res.stderr.splitlines() if line.startswith("E:")] or [res.stderr.strip()[-300:]]
            raise CheckFailed(f"apt mirror {mirror}: cannot download {' '.join(specs)}: {' / '.join(why)}",
                              hint="is that version on the mirror? nothing was written to --out")
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for deb in sorted((work / "archives").glob("*.deb")):
        shutil.copyfile(deb, dest / deb.name)
        names.append(deb.name)
    return names

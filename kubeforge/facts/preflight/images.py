"""The images preflight: every image a node needs for this run is in containerd's k8s.io namespace,
or the offline bundle brings it, or a configured registry answers.

    probe = images_probe(endpoints, ca_pem)            # read-only: `ctr images ls -q`, GET /v2/ per endpoint
    seen = parse_images_probe(host, stdout)             # ImagesSeen(present, answered, unanswered)
    results = check_images(host, needed, seen, bundle=refs, sources=registry_sources(cluster, refs))

Decisions:
- "Present" is containerd's k8s.io namespace as `ctr -n k8s.io images ls -q` lists it (nothing
  yet on a host without containerd).
- An image the bundle's manifest lists will be imported by PrepareImages: provided.
- Otherwise it must be pulled. Its registry is asked only when the operator configured where it
  comes from: a private ``spec.images.repository`` or ``spec.images.mirrors`` for that registry.
  Each endpoint (the mirrors in order, then the registry itself unless it is an upstream one) gets
  an HTTPS ``GET /v2/`` from the host, with the inventory's CA when it has one; any HTTP answer
  (401 included: the pull will authenticate) is reachable. No endpoint answering fails the check
  (exit 4 in `up`/`upgrade`), naming the registry, what was tried and the images.
- An upstream registry (registry.k8s.io, ghcr.io, docker.io), or any registry the inventory does not
  configure (a CNI manifest's quay.io), with no mirror is a warning only: whether it is reachable
  cannot be decided honestly from a host that may or may not have egress.
- No credentials are sent: the question is whether the registry can be reached, not the password.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kubeforge.facts.preflight.report import CheckResult, failed, passed, warned
from kubeforge.model import Cluster
from kubeforge.model.cluster import DEFAULT_IMAGE_REPOSITORY
from kubeforge.transport.base import Command

CHECK = "images"
UPSTREAM_REGISTRIES = frozenset({DEFAULT_IMAGE_REPOSITORY.split("/", 1)[0], "ghcr.io", "docker.io"})
_MARK = "--kubeforge-registry"


def registry_of(ref: str) -> str:
    """The registry host of an image reference (``registry.example:5000/k8s/pause:3.10`` ->
    ``registry.example:5000``); docker.io for a reference without one."""
    first, _, rest = ref.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else "docker.io"


@dataclass(frozen=True)
class RegistrySource:
    registry: str
    endpoints: tuple[str, ...]  # URLs to ask, in containerd's order; () = upstream, not asked


def registry_sources(cluster: Cluster, refs: Iterable[str]) -> dict[str, RegistrySource]:
    """registry -> where containerd would pull from, for the registries of ``refs``."""
    mirrors = dict(cluster.images.mirrors)
    out = {}
    for registry in sorted({registry_of(r) for r in refs}):
        endpoints = [u.rstrip("/") for u in mirrors.get(registry, ())]
        # a private registry is the inventory's (its repository's, or one it has credentials for);
        # any other one (a CNI manifest's quay.io, say) is as upstream as registry.k8s.io
        configured = registry == cluster.images.registry or cluster.images.credential_for(registry) is not None
        if registry not in UPSTREAM_REGISTRIES and configured:
            endpoints.append(f"https://{registry}")
        out[registry] = RegistrySource(registry, tuple(dict.fromkeys(endpoints)))
    return out


def images_probe(endpoints: Sequence[str], ca_pem: bytes | None) -> Command:
    """Read-only: the images containerd's k8s.io namespace holds, then one line per endpoint with
    the HTTP status of ``GET <endpoint>/v2/`` (000: no answer) and curl's exit status."""
    # no containerd running (a fresh host): nothing present, and no 10 s wait for ctr to give up
    lines = ["if command -v ctr >/dev/null && [ -S /run/containerd/containerd.sock ]; then "
             "ctr --connect-timeout 5s -n k8s.io images ls -q 2>/dev/null || true; fi",
             f"echo {_MARK}"]
    if endpoints:
        lines.append('ca="$(cat)"' if ca_pem else "")
        cacert = ' --cacert <(printf "%s\\n" "$ca")' if ca_pem else ""
        for url in endpoints:
            u = shlex.quote(f"{url}/v2/")
            lines.append(f"if ! command -v curl >/dev/null; then echo {u} nocurl; else "
                         f"code=$(curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10{cacert} {u} 2>/dev/null) "
                         f"&& rc=0 || rc=$?; echo {u} \"${{code:-000}}\" \"$rc\"; fi")
    return Command(script="\n".join(line for line in lines if line) + "\n", sudo=True, timeout=120, check=False,
                   stdin=ca_pem if endpoints and ca_pem else None, description="images preflight (read-only)")


@dataclass(frozen=True)
class ImagesSeen:
    present: frozenset[str] = frozenset()
    answered: frozenset[str] = frozenset()  # endpoint URLs that gave any HTTP answer
    unanswered: Mapping[str, str] = field(default_factory=dict)  # URL -> why


def parse_images_probe(stdout: str) -> ImagesSeen:
    head, _, tail = stdout.partition(f"{_MARK}\n")
    if not _:
        raise ValueError("the images probe stopped before it listed the registries")
    answered, unanswered = set(), {}
    for line in tail.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "nocurl":
            unanswered[parts[0].removesuffix("/v2/")] = "curl is not installed on the host"
        elif len(parts) == 3:
            url, code, rc = parts[0].removesuffix("/v2/"), parts[1], parts[2]
            if code.isdigit() and code != "000":
                answered.add(url)
            else:
                unanswered[url] = f"no HTTP answer (curl exit {rc})"
    return ImagesSeen(frozenset(head.split()), frozenset(answered), unanswered)


def check_images(host: str, needed: Iterable[str], seen: ImagesSeen, *, bundle: frozenset[str] | None,
                 sources: Mapping[str, RegistrySource]) -> list[CheckResult]:
    """One result for ``host``: pass, warn (an upstream registry that cannot be asked) or fail."""
    needed = sorted(set(needed))
    to_pull = [r for r in needed if r not in seen.present and (bundle is None or r not in bundle)]
    if not to_pull:
        how = "present in containerd (k8s.io)" + (" or in the offline bundle" if bundle is not None else "")
        return [passed(host, CHECK, f"{len(needed)} images {how}")]
    if bundle is not None:  # the bundle carries images: nothing is pulled, so what it lacks is missing
        return [failed(host, CHECK, f"not in containerd and not in the offline bundle: {', '.join(to_pull)}")]
    problems, unknown, ok = [], [], []
    for registry in sorted({registry_of(r) for r in to_pull}):
        refs = [r for r in to_pull if registry_of(r) == registry]
        src = sources[registry]
        if not src.endpoints:
            unknown.append(f"{registry} ({len(refs)} images, e.g. {refs[0]})")
        elif any(u in seen.answered for u in src.endpoints):
            ok.append(registry)
        else:
            tried = "; ".join(f"{u}: {seen.unanswered.get(u, 'not asked')}" for u in src.endpoints)
            problems.append(f"registry {registry} unreachable ({tried}) for {', '.join(refs)}")
    if problems:
        return [failed(host, CHECK, "; ".join(problems))]
    if unknown:
        return [warned(host, CHECK, f"pulled from upstream {', '.join(unknown)}: reachability not checked (no "
                                    "egress can be assumed); an air-gapped site needs spec.images or an offline bundle")]
    return [passed(host, CHECK, f"{len(to_pull)} images to pull; {', '.join(ok)} answered")]


def read_images(pool, hosts, endpoints: Sequence[str], ca_pem: bytes | None):
    """The images probe on every host, in parallel: a FanoutResult of ImagesSeen per host."""
    probe = images_probe(endpoints, ca_pem)
    return pool.fanout(hosts, lambda t: parse_images_probe(t.run(probe).stdout))

"""prepare_etcd_sources against a real HTTP server on loopback and a real bundle directory: fetched
once into the cache, verified before anything else, refused with exit 3 naming the file, the
expected and the actual sha256."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from kubeforge.errors import CheckFailed, InputError
from kubeforge.model import PackageSourceKind
from kubeforge.plan.etcd import commands as cmd
from kubeforge.workflows.etcd.sources import prepare_etcd_sources
from tests.factories import make_cluster

VERSION = "3.5.16"
NAME = f"etcd-v{VERSION}-linux-amd64.tar.gz"


def release_archive(version: str = VERSION) -> bytes:
    top = f"etcd-v{version}-linux-amd64"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("etcd", "etcdctl", "etcdutl"):
            data = f"#!/bin/sh\necho '{name} {version}'\n".encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sums_line(content: bytes, name: str = NAME) -> str:
    return f"{hashlib.sha256(content).hexdigest()}  {name}\n"


class Site:
    """A release site on 127.0.0.1 serving a directory, counting requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def log_message(self, *args):
                site.requests.append(self.path)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/releases"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path / "site")
    yield s
    s.stop()


def publish(site: Site, content: bytes, sums: str | None) -> None:
    d = site.root / "releases" / f"v{VERSION}"
    d.mkdir(parents=True, exist_ok=True)
    (d / NAME).write_bytes(content)
    if sums is not None:
        (d / "SHA256SUMS").write_text(sums)


def cluster_with(tmp_path, **etcd):
    c = make_cluster(tmp_path / "inv", etcd_version=VERSION)
    return dataclasses.replace(c, etcd=dataclasses.replace(c.etcd, **etcd))


def test_an_archive_is_fetched_once_verified_and_then_served_from_the_cache(tmp_path, site):
    content = release_archive()
    publish(site, content, sums_line(content))
    c = cluster_with(tmp_path, release_url=site.url)
    [first] = prepare_etcd_sources(c, [VERSION])
    assert first.fetched and first.path.read_bytes() == content and first.checksum_from.endswith("SHA256SUMS")
    assert first.path == c.state_dir / "cache" / "etcd" / f"v{VERSION}" / NAME
    site.stop()  # the second run must not need the site at all
    [second] = prepare_etcd_sources(c, [VERSION])
    assert not second.fetched and second.sha256 == hashlib.sha256(content).hexdigest()
    put, _ = cmd.install_steps(c, c.etcd_members[0])
    assert put.file.content == content


def test_a_download_that_differs_from_sha256sums_is_refused_and_kept_aside(tmp_path, site):
    content = release_archive()
    publish(site, content[:-1] + bytes([content[-1] ^ 1]), sums_line(content))
    c = cluster_with(tmp_path, release_url=site.url)
    with pytest.raises(InputError) as exc:
        prepare_etcd_sources(c, [VERSION])
    msg = str(exc.value)
    assert exc.value.exit_code == 3
    assert hashlib.sha256(content).hexdigest() in msg and f"{NAME}.rejected" in msg
    cache = c.state_dir / "cache" / "etcd" / f"v{VERSION}"
    assert not (cache / NAME).exists() and (cache / f"{NAME}.rejected").exists()


def test_a_pin_is_trusted_over_the_sites_list_and_needs_no_sha256sums(tmp_path, site):
    content = release_archive()
    publish(site, content, None)
    c = cluster_with(tmp_path, release_url=site.url, checksums=((VERSION, hashlib.sha256(content).hexdigest()),))
    [p] = prepare_etcd_sources(c, [VERSION])
    assert "etcd.checksums[3.5.16]" in p.checksum_from
    assert not any(r.endswith("SHA256SUMS") for r in site.requests)


def test_a_pin_that_disagrees_with_the_archive_is_refused_even_when_sha256sums_agrees(tmp_path, site):
    content = release_archive()
    publish(site, content, sums_line(content))
    pin = "0" * 64
    c = cluster_with(tmp_path, release_url=site.url, checksums=((VERSION, pin),))
    with pytest.raises(InputError, match=f"does not match the expected {pin}"):
        prepare_etcd_sources(c, [VERSION])


def test_a_version_the_site_does_not_have_is_named_with_the_http_status(tmp_path, site):
    publish(site, release_archive(), None)
    c = cluster_with(tmp_path, release_url=site.url)
    with pytest.raises(InputError, match=r"cannot fetch .*/v3.5.16/SHA256SUMS: HTTP 404"):
        prepare_etcd_sources(c, [VERSION])


def test_an_unreachable_site_is_a_failed_check_not_a_crash(tmp_path, site):
    c = cluster_with(tmp_path, release_url=site.url)
    site.stop()
    with pytest.raises(CheckFailed, match="cannot fetch"):
        prepare_etcd_sources(c, [VERSION], timeout=5)


def offline_cluster(tmp_path, bundle: Path):
    c = make_cluster(tmp_path / "inv", etcd_version=VERSION)
    return dataclasses.replace(c, packages=dataclasses.replace(c.packages, kind=PackageSourceKind.OFFLINE,
                                                               bundle_dir=bundle))


def test_an_offline_bundle_is_checked_on_every_run_so_a_changed_bundle_is_never_covered_by_the_cache(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    content = release_archive()
    (bundle / NAME).write_bytes(content)
    (bundle / "SHA256SUMS").write_text(sums_line(content))
    c = offline_cluster(tmp_path, bundle)
    [p] = prepare_etcd_sources(c, [VERSION])
    assert p.fetched and p.path.read_bytes() == content
    flipped = bytearray(content)
    flipped[len(flipped) // 2] ^= 0x01
    (bundle / NAME).write_bytes(bytes(flipped))
    with pytest.raises(InputError) as exc:
        prepare_etcd_sources(c, [VERSION])
    msg = str(exc.value)
    assert str(bundle / NAME) in msg
    assert hashlib.sha256(content).hexdigest() in msg and hashlib.sha256(bytes(flipped)).hexdigest() in msg


def test_an_offline_bundle_without_the_archive_or_its_sums_says_which_file_is_missing(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    c = offline_cluster(tmp_path, bundle)
    with pytest.raises(InputError, match=r"SHA256SUMS: no such file"):
        prepare_etcd_sources(c, [VERSION])
    (bundle / "SHA256SUMS").write_text(sums_line(b"x"))
    with pytest.raises(InputError, match=rf"{NAME}: no such file"):
        prepare_etcd_sources(c, [VERSION])


def test_the_mirrors_debian_packages_need_nothing_prepared(tmp_path):
    assert prepare_etcd_sources(make_cluster(tmp_path), ["3.4.23"]) == []


def test_prepare_for_members_asks_each_machine_its_arch_and_names_every_unreachable_one(tmp_path, site):
    from kubeforge.errors import TransportError
    from kubeforge.transport.local import LocalTransport
    from kubeforge.transport.pool import TransportPool
    from kubeforge.workflows.etcd.sources import prepare_for_members

    content = release_archive()
    publish(site, content, sums_line(content))
    c = cluster_with(tmp_path, release_url=site.url)
    # this machine stands in for every member: real `uname -m` through a real local bash
    arches = prepare_for_members(c, TransportPool(c, factory=lambda h: LocalTransport(host=h.name)), [VERSION])
    assert arches == {h.name: "amd64" for h in c.etcd_members}

    def unreachable(h):
        if h.name != "etcd-1":
            raise TransportError(h.name, "connection refused")
        return LocalTransport(host=h.name)

    with pytest.raises(TransportError) as exc:
        prepare_for_members(c, TransportPool(c, factory=unreachable), [VERSION])
    assert "etcd-2" in str(exc.value) and "etcd-3" in str(exc.value)

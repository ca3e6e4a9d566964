"""Where etcd comes from: archive names and URLs per source, SHA256SUMS parsing, pins, the unit's
ExecStart per source, install_steps per source, and the inventory fields with their positions."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from kubeforge.errors import InputError, InventoryError
from kubeforge.inventory import loads
from kubeforge.model import PackageSourceKind
from kubeforge.plan.etcd import commands as cmd
from kubeforge.plan.etcd.source import (
    UPSTREAM_RELEASES,
    archive_for,
    cached_archive,
    cached_sums,
    expected_checksum,
    load_verified,
    parse_sha256sums,
)
from kubeforge.plan.steps import PutFileStep, RunStep
from kubeforge.render.context import cluster_context
from kubeforge.render.etcd import UNIT_PATH, render_etcd
from tests.factories import make_cluster

SHA_A = "a" * 64
SHA_B = "b" * 64


def with_source(cluster, *, kind=None, release_url=None, bundle_dir=None, checksums=()):
    packages = cluster.packages
    if kind is not None:
        packages = dataclasses.replace(packages, kind=kind, bundle_dir=bundle_dir)
    etcd = dataclasses.replace(cluster.etcd, release_url=release_url, checksums=tuple(checksums))
    return dataclasses.replace(cluster, packages=packages, etcd=etcd)


def test_a_release_url_names_the_versioned_archive_and_its_sha256sums_beside_it(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.16"), release_url="http://10.77.0.1:8080/etcd-releases")
    a = archive_for(c)
    assert a.url == "http://10.77.0.1:8080/etcd-releases/v3.5.16/etcd-v3.5.16-linux-amd64.tar.gz"
    assert a.sums_url == "http://10.77.0.1:8080/etcd-releases/v3.5.16/SHA256SUMS"
    assert a.top_dir == "etcd-v3.5.16-linux-amd64"
    assert a.remote_path == "/var/cache/kubeforge/etcd/etcd-v3.5.16-linux-amd64.tar.gz"
    assert a.binaries == ("etcd", "etcdctl", "etcdutl")


def test_the_upstream_source_without_a_release_url_uses_etcds_github_releases(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.4.23"), kind=PackageSourceKind.UPSTREAM)
    a = archive_for(c, arch="arm64")
    assert a.url == f"{UPSTREAM_RELEASES}/v3.4.23/etcd-v3.4.23-linux-arm64.tar.gz"
    assert a.binaries == ("etcd", "etcdctl")  # no etcdutl before 3.5


def test_the_offline_source_reads_the_archive_and_sha256sums_from_the_bundle_dir(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.30"), kind=PackageSourceKind.OFFLINE,
                    bundle_dir=tmp_path / "bundle")
    a = archive_for(c)
    assert a.offline
    assert a.url == str(tmp_path / "bundle" / "etcd-v3.5.30-linux-amd64.tar.gz")
    assert a.sums_url == str(tmp_path / "bundle" / "SHA256SUMS")


def test_the_mirror_without_a_release_url_keeps_debian_packages_and_a_release_url_overrides_it(tmp_path):
    c = make_cluster(tmp_path)
    assert c.packages.kind is PackageSourceKind.MIRROR
    assert archive_for(c) is None
    assert archive_for(with_source(c, release_url="https://mirror.example/etcd")) is not None


def test_sha256sums_accepts_text_and_binary_mode_lines_and_skips_comments():
    text = f"# etcd release sums\n\n{SHA_A.upper()}  etcd-v3.5.16-linux-amd64.tar.gz\n{SHA_B} *./etcd-v3.5.16-linux-arm64.zip\n"
    assert parse_sha256sums(text) == {"etcd-v3.5.16-linux-amd64.tar.gz": SHA_A, "etcd-v3.5.16-linux-arm64.zip": SHA_B}


def test_a_malformed_sha256sums_line_is_named_with_its_line_number():
    with pytest.raises(InputError, match=r"SHA256SUMS:2: not a checksum line") as exc:
        parse_sha256sums(f"{SHA_A}  a.tar.gz\nnot-a-sum  b.tar.gz\n")
    assert exc.value.exit_code == 3


def test_a_pinned_checksum_wins_over_the_sites_list(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.16"), release_url="http://10.77.0.1/e",
                    checksums=[("3.5.16", SHA_B)])
    a = archive_for(c)
    sha, origin = expected_checksum(c, a, {a.name: SHA_A})
    assert sha == SHA_B and "etcd.checksums[3.5.16]" in origin


def test_without_a_pin_the_sha256sums_entry_is_expected_and_a_missing_entry_is_refused(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.16"), release_url="http://10.77.0.1/e")
    a = archive_for(c)
    assert expected_checksum(c, a, {a.name: SHA_A}) == (SHA_A, a.sums_url)
    with pytest.raises(InputError, match="has no checksum for etcd-v3.5.16-linux-amd64.tar.gz"):
        expected_checksum(c, a, {"other.tar.gz": SHA_A})


def _unit(cluster) -> str:
    host = cluster.etcd_members[0]
    files = {f.path: f for f in render_etcd(cluster_context(cluster), host)}
    return files[UNIT_PATH].content.decode()


def test_the_unit_runs_debians_etcd_from_the_mirror_and_the_unpacked_one_from_archives(tmp_path):
    c = make_cluster(tmp_path)
    assert "ExecStart=/usr/bin/etcd\n" in _unit(c)
    for variant in (with_source(c, release_url="http://10.77.0.1/e"), with_source(c, kind=PackageSourceKind.UPSTREAM),
                    with_source(c, kind=PackageSourceKind.OFFLINE, bundle_dir=tmp_path)):
        assert "ExecStart=/usr/local/bin/etcd\n" in _unit(variant)


def test_install_steps_from_the_mirror_are_one_pinned_apt_step(tmp_path):
    c = make_cluster(tmp_path, etcd_version="3.4.23")
    steps = cmd.install_steps(c, c.etcd_members[0], key="k")
    assert [type(s) for s in steps] == [RunStep]
    assert "etcd-server" in steps[0].command.script and steps[0].unless is not None


def _cache(c, content: bytes, sums: str | None = None):
    a = archive_for(c)
    path = cached_archive(c, a)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    if sums is not None:
        cached_sums(c, a).write_text(sums)
    return a


def test_install_steps_from_an_archive_push_the_verified_copy_then_unpack_it_unless_installed(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.16"), release_url="http://10.77.0.1/e")
    content = b"archive bytes"
    a = _cache(c, content, f"{hashlib.sha256(content).hexdigest()}  etcd-v3.5.16-linux-amd64.tar.gz\n")
    put, unpack = cmd.install_steps(c, c.etcd_members[0], key="install-3.5.16", title="Install etcd 3.5.16")
    assert isinstance(put, PutFileStep) and put.file.path == a.remote_path and put.file.content == content
    assert isinstance(unpack, RunStep) and unpack.title == "Install etcd 3.5.16"
    assert put.id != unpack.id  # two steps of one lane must never share a journal id
    script = unpack.command.script
    assert hashlib.sha256(content).hexdigest() in script and "sha256sum --check" in script
    assert "mktemp -d /usr/local/bin/" in script and 'mv -f -- "$t/etcdutl" /usr/local/bin/etcdutl' in script
    assert "etcd Version: 3.5.16" in unpack.unless.script and "etcdutl version: 3.5.16" in unpack.unless.script


def test_install_steps_refuse_a_cached_archive_that_no_longer_matches_its_checksum(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.16"), release_url="http://10.77.0.1/e",
                    checksums=[("3.5.16", SHA_A)])
    a = _cache(c, b"tampered")
    with pytest.raises(InputError) as exc:
        load_verified(c, a)
    msg = str(exc.value)
    assert SHA_A in msg and hashlib.sha256(b"tampered").hexdigest() in msg and a.name in msg


def test_install_steps_for_an_archive_never_fetched_say_what_is_missing(tmp_path):
    c = with_source(make_cluster(tmp_path, etcd_version="3.5.16"), kind=PackageSourceKind.UPSTREAM)
    with pytest.raises(InputError, match="has not been fetched and verified"):
        cmd.install_steps(c, c.etcd_members[0])


INVENTORY = """\
apiVersion: kubeforge.io/v1alpha1
kind: Cluster
metadata:
  name: demo
spec:
  kubernetesVersion: "1.34.2"
  etcd:
    version: "3.5.16"
    releaseURL: {url}
    checksums:
      {key}: "{sha}"
  hosts:
    - {{name: cp-1, address: 10.77.9.10, roles: [control-plane]}}
    - {{name: etcd-1, address: 10.77.9.11, roles: [etcd]}}
    - {{name: etcd-2, address: 10.77.9.12, roles: [etcd]}}
    - {{name: etcd-3, address: 10.77.9.13, roles: [etcd]}}
"""


def test_the_inventory_carries_release_url_and_pins_into_the_model():
    res = loads(INVENTORY.format(url="http://10.77.0.1:8080/etcd-releases/", key='"v3.5.16"', sha=SHA_A.upper()))
    etcd = res.cluster.etcd
    assert etcd.release_url == "http://10.77.0.1:8080/etcd-releases"
    assert etcd.pinned_checksum("3.5.16") == SHA_A


def test_a_release_url_must_be_http_and_pins_need_a_full_version_and_64_hex_digits():
    with pytest.raises(InventoryError) as exc:
        loads(INVENTORY.format(url="ftp://10.77.0.1/etcd", key='"3.5"', sha="abc"), file="inv.yaml")
    assert exc.value.exit_code == 3
    assert [f"{p.line}:{p.col}: {p.message}" for p in exc.value.problems] == [
        "9:17: 'ftp://10.77.0.1/etcd' is not an http(s) URL",
        "11:7: '3.5' is not an etcd version (X.Y.Z, e.g. 3.5.16)",
        "11:14: a sha256 is 64 hex digits",
    ]


def test_up_installs_debian_etcd_pinned_from_the_mirror_and_leaves_archives_to_the_etcd_phases(tmp_path):
    from types import SimpleNamespace

    from kubeforge.plan.up.install_packages import install_script, wanted_packages

    c = make_cluster(tmp_path, etcd_version="3.4.23")
    member = c.etcd_members[0]
    wanted = wanted_packages(SimpleNamespace(cluster=c), member)
    assert wanted == {"etcd-server": "3.4.23", "etcd-client": "3.4.23"}
    assert "etcd-server=3.4.23-* etcd-client=3.4.23-*" in install_script(wanted, []).replace("'", "")
    archived = with_source(c, release_url="http://10.77.0.1/e")
    assert wanted_packages(SimpleNamespace(cluster=archived), member) == {}

"""Which images each host needs for a Kubernetes version and its roles (kubeforge.model.images)."""

from __future__ import annotations

import dataclasses

from kubeforge.model import ImageSettings
from kubeforge.model.images import images_by_host, images_for_host, kube_vip_image
from kubeforge.model.versions import kube_minors, parse_kube
from tests.golden.cases import external_kube_vip, single_node, stacked_haproxy


def refs(cluster, host, version=None):
    return [i.ref for i in images_for_host(cluster, cluster.host(host), parse_kube(version) if version else None)]


def test_a_stacked_control_plane_needs_kubeadms_whole_list_at_the_pinned_tags():
    c = single_node()  # 1.35, stacked, endpoint none
    assert refs(c, c.control_planes[0].name, "1.35.1") == [
        "registry.k8s.io/coredns/coredns:v1.13.1",
        "registry.k8s.io/etcd:3.6.6-0",
        "registry.k8s.io/kube-apiserver:v1.35.1",
        "registry.k8s.io/kube-controller-manager:v1.35.1",
        "registry.k8s.io/kube-proxy:v1.35.1",
        "registry.k8s.io/kube-scheduler:v1.35.1",
        "registry.k8s.io/pause:3.10.1",
    ]


def test_external_etcd_control_planes_need_no_etcd_image_and_kube_vip_mode_adds_kube_vip():
    c = external_kube_vip()
    cp = refs(c, c.control_planes[0].name)
    assert not [r for r in cp if "/etcd:" in r]
    assert "ghcr.io/kube-vip/kube-vip:v0.8.9" in cp


def test_workers_need_kube_proxy_pause_and_coredns_only_and_balancers_and_etcd_hosts_none():
    c = stacked_haproxy()
    worker = refs(c, c.workers[0].name)
    assert [r.split(":")[0].rsplit("/", 1)[1] for r in worker] == ["coredns", "kube-proxy", "pause"]
    assert refs(c, c.load_balancers[0].name) == []
    ext = external_kube_vip()
    assert refs(ext, ext.etcd_members[0].name) == []
    assert set(images_by_host(ext)) == {h.name for h in ext.nodes}


def test_an_upgrade_hop_asks_for_the_next_versions_images():
    c = single_node()
    nxt = refs(c, c.control_planes[0].name, "1.36.0")
    assert "registry.k8s.io/kube-apiserver:v1.36.0" in nxt
    assert "registry.k8s.io/etcd:3.6.9-0" in nxt
    assert "registry.k8s.io/pause:3.10.2" in nxt


def test_a_private_repository_moves_every_image_and_coredns_drops_its_subpath():
    c = dataclasses.replace(external_kube_vip(), images=ImageSettings(repository="reg.example:5000/k8s"))
    cp = refs(c, c.control_planes[0].name)
    assert all(r.startswith("reg.example:5000/k8s/") for r in cp), cp
    # kubeadm's GetDNSImage: registry.k8s.io/coredns/coredns upstream, <repository>/coredns elsewhere
    assert any(r.startswith("reg.example:5000/k8s/coredns:") for r in cp)
    assert kube_vip_image(c).ref == "reg.example:5000/k8s/kube-vip:v0.8.9"


def test_every_known_minor_has_image_facts_with_their_sources():
    for m in kube_minors().values():
        assert m.etcd_image_tag.startswith(f"{m.kubeadm_etcd}-"), m.name
        assert m.coredns.startswith("v"), m.name
        assert m.pause.startswith("registry.k8s.io/pause:"), m.name
        assert "coredns" in m.sources, f"{m.name}: coredns has no source"


def test_render_output_groups_hosts_needing_the_same_images():
    from pathlib import Path
    from types import SimpleNamespace

    from rich.console import Console

    from kubeforge.ui.render_view import render_document, render_summary

    c = external_kube_vip()
    images = {h: [i.ref for i in imgs] for h, imgs in images_by_host(c).items()}
    doc = render_document(c.name, Path("/out"), [], SimpleNamespace(changed=[]), images=images)
    assert doc["images"] == images
    console = Console(record=True, width=200)
    render_summary(doc, console)
    text = console.export_text()
    cps = ", ".join(h.name for h in c.control_planes)
    assert f"  {cps}: 7 images\n" in text
    assert f"  {', '.join(h.name for h in c.workers)}: 3 images\n" in text
    assert "    ghcr.io/kube-vip/kube-vip:v0.8.9\n" in text

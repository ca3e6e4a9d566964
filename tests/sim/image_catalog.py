"""What the simulator's stand-in for the public registries holds, derived from kubeforge's version data.

Built on the runner (it reads kubeforge/model/versions.yaml, where every tag has its source) and
shipped inside the simulator's packages as ``kubesim/images.json`` (tests/sim/build_debs.py), so the
machines need nothing but the standard library. The source tree's copy (for in-process tests) is
rewritten with ``python -m tests.sim.image_catalog``; a unit test fails when it differs from the data.
Never a list of images written out by hand.
"""

from __future__ import annotations

from kubeforge.model.versions import kube_minors, own_image


def catalog() -> dict:
    """{"minors": {"1.35": {"etcd": "3.6.6-0", "coredns": "v1.13.1", "pause": "registry.k8s.io/pause:3.10.1"}},
    "own": {"ghcr.io/kube-vip/kube-vip": ["v0.8.9"]}}: kubeadm's pinned tags per minor (the control-plane
    images and kube-proxy exist upstream at every patch of these minors) and the images kubeforge itself
    runs."""
    minors = {}
    for key, m in sorted(kube_minors().items()):
        minors[f"{key[0]}.{key[1]}"] = {"etcd": m.etcd_image_tag, "coredns": m.coredns, "pause": m.pause}
    image, tag, _ = own_image("kubeVip")
    return {"minors": minors, "own": {image: [tag]}}


def text() -> str:
    import json

    return json.dumps(catalog(), indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    from tests.sim.kubesim.images import CATALOG_FILE

    Path(__file__).with_name("kubesim").joinpath(CATALOG_FILE).write_text(text())

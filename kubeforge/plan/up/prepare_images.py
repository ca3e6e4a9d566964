"""PrepareImages: on every Kubernetes node, containerd's registry configuration
(/etc/containerd/certs.d/<registry>/hosts.toml and CA; containerd reads them at each pull, so no
restart) and, when the offline bundle has an images part, the archives of the images this node's
roles need for this version, imported into containerd's k8s.io namespace — before kubeadm or the
kubelet asks for any image.

The bundle's images are checked while planning (kubeforge.plan.bundle_images: exit 3 for an archive
that does not match the manifest, exit 7 for an image the bundle lacks), before any host is touched.
"""

from __future__ import annotations

from kubeforge.model.images import images_for_host
from kubeforge.plan.bundle_images import import_steps, load_image_part, require_images
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import parallel
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.scripts import puts
from kubeforge.render.registries import CERTS_DIR


class PrepareImages:
    name = "PrepareImages"
    title = "Prepare container images (registry configuration, bundle images)"
    strategy = parallel()

    def plan(self, ctx: UpContext) -> PhasePlan:
        c = ctx.cluster
        wanted = {h.name: images_for_host(c, h) for h in c.nodes}
        part = load_image_part(c)
        if part is not None:
            require_images(part, wanted)
        lanes = []
        for host in c.nodes:
            steps: list = puts(host, ctx.pending(host, ctx.files_where(host, prefix=f"{CERTS_DIR}/")))
            if part is not None:
                steps += import_steps(host.name, part, wanted[host.name])
            lanes.append((host.name, steps))
        return PhasePlan.of(self, lanes, strategy=parallel(c.parallelism),
                            reason_if_empty="registry configuration in place; images come from the registry"
                            if part is None else "registry configuration in place and every bundle image imported")

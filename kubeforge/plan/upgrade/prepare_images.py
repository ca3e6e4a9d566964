"""PrepareImages (upgrade): before any node of the hop is drained or upgraded, every node that still
needs the hop gets the hop version's images its roles need from the offline bundle, pushed and
imported into containerd's k8s.io namespace (skipped for images already there), all nodes in
parallel. So a node's drain window holds only the package and kubelet changes: `kubeadm upgrade
apply` and the restarted static pods and kubelet find their images in place.

Without an images part in the bundle (or without an offline bundle), images come from the
configured registry and this phase plans nothing. The bundle was checked while planning
(kubeforge.plan.bundle_images: exit 3 for an archive that does not match the manifest, exit 7
for a hop image the bundle lacks), before any host was touched.
"""

from __future__ import annotations

from kubeforge.model.images import images_for_host
from kubeforge.plan.bundle_images import import_steps, load_image_part, require_images
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.strategy import parallel
from kubeforge.plan.upgrade.context import UpgradeContext


class PrepareImages:
    name = "PrepareImages"
    title = "Import the hop's images"
    strategy = parallel()

    def title_for(self, ctx: UpgradeContext, bundled: bool) -> str:
        source = " from the offline bundle" if bundled else ""
        return f"Import the images of {ctx.target}{source}{ctx.hop_note}"

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        todo = [h for h in ctx.cluster.nodes if not ctx.converged(h)]
        part = load_image_part(ctx.cluster) if todo else None
        if part is None:
            return PhasePlan.of(self, (), title=self.title_for(ctx, bundled=False), reason_if_empty=(
                f"every node already runs {ctx.target}" if not todo else "images come from the registry"))
        wanted = {h.name: images_for_host(ctx.cluster, h, ctx.target) for h in todo}
        require_images(part, wanted)
        lanes = [(h.name, import_steps(h.name, part, wanted[h.name], key=ctx.key("images") + "-")) for h in todo]
        return PhasePlan.of(self, lanes, title=self.title_for(ctx, bundled=True), strategy=parallel(ctx.cluster.parallelism),
                            reason_if_empty="no node needs an image")

"""SwitchPackageSource: every node that still needs the hop reads the new minor's repository, with
the pin moved to the exact target version. Nothing is installed here; holds keep every package
where it is until its own phase moves it. With an offline bundle, the bundle (verified on the
operator's machine while planning) is pushed first: only files whose sha256 differs travel."""

from __future__ import annotations

from kubeforge.plan.bundle import (
    KUBE_PACKAGES,
    load_bundle,
    push_bundle,
    require_packages,
)
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import PutFileStep, slug
from kubeforge.plan.strategy import parallel
from kubeforge.plan.upgrade.commands import apt_update
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.render.packages import (
    BUNDLE_LIST,
    DEBIAN_MIRROR_LIST,
    KUBERNETES_LIST,
    PIN_PATH,
)

SOURCE_FILES = (KUBERNETES_LIST, PIN_PATH, DEBIAN_MIRROR_LIST, BUNDLE_LIST)


class SwitchPackageSource:
    name = "SwitchPackageSource"
    title = "Switch the package source"
    strategy = parallel()

    def title_for(self, ctx: UpgradeContext) -> str:
        return f"Switch the package source to Kubernetes {ctx.target.minor_str}{ctx.hop_note}{ctx.offered_note}"

    def plan(self, ctx: UpgradeContext) -> PhasePlan:
        lanes = []
        todo = [h for h in ctx.cluster.nodes if not ctx.converged(h)]
        bundle = load_bundle(ctx.cluster) if todo else None
        if bundle is not None:
            require_packages(bundle, {h.name: dict.fromkeys(KUBE_PACKAGES, str(ctx.target)) for h in todo})
        for host in todo:
            steps: list = push_bundle(host.name, bundle, key=ctx.key("bundle")) if bundle is not None else []
            steps += [
                PutFileStep(host.name, f, key=ctx.key("put", slug(f.path))) for f in ctx.files_of(host, SOURCE_FILES)
            ]
            steps.append(apt_update(host.name, ctx.target, key=ctx.key("apt-update"), offline=ctx.offline))
            lanes.append((host.name, steps))
        return PhasePlan.of(
            self,
            lanes,
            title=self.title_for(ctx),
            strategy=parallel(ctx.cluster.parallelism),
            reason_if_empty=f"every node already runs {ctx.target}",
        )

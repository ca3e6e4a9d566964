"""ApplyCni: the inventory's CNI manifest, applied once from the first control plane. A local file
is pushed to /etc/kubeforge/cni/ and applied from there; a URL is given to kubectl as is. A marker
holding the manifest's sha256 makes it once: a changed manifest is applied again, the same one never."""

from __future__ import annotations

from kubeforge.model import RenderedFile
from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import PutFileStep, RunStep, slug
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import CNI_DIR, CNI_MARKER, UpContext
from kubeforge.plan.up.scripts import q
from kubeforge.transport.base import Command


class ApplyCni:
    name = "ApplyCni"
    title = "Apply the CNI"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        cni = ctx.cni
        if cni is None:
            return PhasePlan.noop(self, "the inventory names no CNI manifest (network.cni.manifest)")
        if ctx.state.cni_marker == cni.fingerprint:
            return PhasePlan.noop(self, f"the {cni.name} manifest was applied already (same sha256)")
        host = ctx.first
        steps: list = []
        if cni.content is not None:
            path = f"{CNI_DIR}/{slug(cni.name)}.yaml"
            steps.append(PutFileStep(host.name, RenderedFile(path, cni.content, source="cni")))
            source = path
        else:
            source = cni.url or ""
        script = f"{KUBECTL} apply -f {q(source)}\necho {cni.fingerprint} > {CNI_MARKER}\n"
        guard = f"[ \"$(cat {CNI_MARKER} 2>/dev/null)\" = {cni.fingerprint} ]"
        steps.append(RunStep(host.name, Command(script=script, sudo=True, timeout=300), f"Apply the {cni.name} CNI manifest",
                             unless=Command(script=guard, sudo=True), key="apply-cni"))
        return PhasePlan.of(self, [(host.name, steps)])

"""WaitNodesReady: every node of the inventory Ready, asked from the first control plane; on timeout
the message names the nodes that are not."""

from __future__ import annotations

from kubeforge.model.kubeadm_paths import KUBECTL
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import GateStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.up.context import UpContext
from kubeforge.plan.up.restart_runtimes import runtime_changes, runtime_restart_is_rolling
from kubeforge.transport.base import Command

# Prints the nodes that are not Ready with the kubelet's reason from their Ready condition (stderr, so
# the failure report shows them: swap, a dead containerd, a cgroup-driver mismatch, no CNI...) and
# fails while any is. The condition is one flat JSON object, its keys in any order. (Scripts run under
# `set -euo pipefail`: a grep that finds nothing must not end the loop.)
PROBE = """not_ready=""
for n in {nodes}; do
  {kubectl} wait --for=condition=Ready node/$n --timeout=1s >/dev/null 2>&1 && continue
  not_ready="$not_ready $n"
  if j=$({kubectl} get node $n -o json 2>&1); then
    why=$(printf %s "$j" | tr -d '\\n' | grep -o '{{[^{{}}]*"type": *"Ready"[^{{}}]*}}' | head -n 1 \\
          | sed -n 's/.*"message": *"\\(\\([^"\\\\]\\|\\\\.\\)*\\)".*/\\1/p' | sed 's/\\\\"/"/g' || true)
  else
    why=$j
  fi
  echo "$n not Ready: ${{why:-no Ready condition reported (is its kubelet running?)}}" >&2
done
if [ -n "$not_ready" ]; then echo "not Ready:$not_ready" >&2; exit 1; fi
"""


class WaitNodesReady:
    name = "WaitNodesReady"
    title = "Wait for every node Ready"
    strategy = serial()

    def plan(self, ctx: UpContext) -> PhasePlan:
        # A node of the running cluster whose containerd is restarted later (stopped, or its config
        # changed) is NotReady until then: its restart phase gates on its Ready, not this one (waiting
        # here would wait for a restart that only comes after the gate).
        later = {h.name for h in ctx.cluster.nodes if runtime_restart_is_rolling(ctx, h) and runtime_changes(ctx, h)[1]}
        names = [h.name for h in ctx.cluster.nodes if h.name not in later]
        waiting = [n for n in names if not (ctx.state.has_node(n) and ctx.state.nodes[n].ready)]
        if not waiting:
            return PhasePlan.noop(self, f"all {len(names)} nodes are Ready" if not later else
                                  f"{len(names)} nodes are Ready; {', '.join(sorted(later))} after its runtime restart")
        probe = Command(script=PROBE.format(nodes=" ".join(names), kubectl=KUBECTL), sudo=True, timeout=60)
        gate = GateStep(ctx.first.name, probe, "Wait for every node Ready", what=f"nodes Ready ({', '.join(names)})",
                        timeout_s=ctx.gate_timeout_s, interval_s=1.0)
        return PhasePlan.of(self, [(ctx.first.name, [gate])])

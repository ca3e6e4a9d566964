"""The confirmation prompt: print the plan that will run, then ask (or not, with ``--yes``)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console

from kubeforge.errors import UsageError
from kubeforge.plan.phase import Plan
from kubeforge.ui.plan_view import print_plan


class Confirmer:
    """A callable for ``kubeforge.execute.confirm.run_confirmed``: shows ``plan`` and answers
    whether to run it. Without a terminal to ask on, it refuses rather than guess: pass --yes."""

    def __init__(
        self,
        console: Console,
        *,
        yes: bool = False,
        ask: Callable[[str], str] | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.console = console
        self.yes = yes
        self.ask = ask or self._ask_on_console
        self.interactive = sys.stdin.isatty() if interactive is None else interactive

    def _ask_on_console(self, prompt: str) -> str:
        # The question goes where the plan went (stderr): stdout stays for -o json|yaml.
        self.console.print(prompt, end="", markup=False)
        return sys.stdin.readline()

    def __call__(self, plan: Plan) -> bool:
        print_plan(self.console, plan)
        if self.yes:
            return True
        if not self.interactive:
            raise UsageError(
                "this would change hosts and there is no terminal to confirm on",
                hint="review the plan with `kubeforge plan`, then run again with --yes",
            )
        answer = self.ask(f"Run these {len(plan.steps)} steps? [y/N] ").strip().lower()
        return answer in ("y", "yes")

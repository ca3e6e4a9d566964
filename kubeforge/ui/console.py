"""The rich consoles kubeforge writes to: results on stdout, progress and messages on stderr."""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console


def make_console(*, stderr: bool = False, file: TextIO | None = None, force_terminal: bool | None = None) -> Console:
    # highlight=False: rich would colour numbers and paths in plain output at random.
    return Console(
        file=file or (sys.stderr if stderr else sys.stdout),
        force_terminal=force_terminal,
        highlight=False,
        soft_wrap=True,
    )


def is_tty(console: Console) -> bool:
    return console.is_terminal and not console.is_dumb_terminal

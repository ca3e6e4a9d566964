"""How a test starts a process it will interrupt: as a terminal's foreground job would be.

A shell started in the background (`cmd &`, nohup, some CI runners) hands its children SIGINT
ignored, and Python then installs no KeyboardInterrupt handler; a test that sends SIGINT to its
child must start the child with SIGINT at its default, as Ctrl-C in a terminal finds it."""

from __future__ import annotations

import signal


def foreground_sigint() -> None:
    """``preexec_fn`` for subprocess.Popen: SIGINT back to its default in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

"""How a Command becomes the bytes a remote (or local) ``bash -s`` reads on its stdin.

The command line a host sees is always the same short ``bash -s`` (maybe behind ``sudo -n`` and
``timeout``); the command itself, its environment and any secrets travel over stdin. So nothing a
Command carries ever shows up in the host's process list or in an sshd log.

bash reads a script from a pipe one byte at a time, so it stops exactly after the line that calls
the wrapped command; whatever follows on stdin is the command's own stdin. The body is wrapped in a
function so that bash parses it completely before running any of it.
"""

from __future__ import annotations

import re
import shlex

from kubeforge.model.secret import Secret
from kubeforge.transport.base import Command

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Exit status of coreutils ``timeout`` when it had to stop the command.
TIMEOUT_EXIT = 124


def env_value(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def stdin_bytes(command: Command) -> bytes:
    if command.stdin is None:
        return b""
    if isinstance(command.stdin, Secret):
        return command.stdin.reveal().encode()
    return command.stdin


# Every process a command starts inherits this variable, set to a random mark per command; an
# interrupted run finds the command's processes by it and stops their process groups (STOP_SCRIPT).
MARK_VAR = "KUBEFORGE_COMMAND"

# Run with T=<mark>, under the same sudo as the command: SIGTERM to the process group of every
# process whose environment carries the mark (the host-side ``timeout`` SIGKILLs the rest 5 s later).
STOP_SCRIPT = f"""for e in /proc/[0-9]*/environ; do
  grep -qsxzF "{MARK_VAR}=$T" "$e" || continue
  p=${{e#/proc/}}; p=${{p%/environ}}
  g=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f3) || continue
  if [ -n "$g" ] && [ "$g" -gt 1 ]; then kill -TERM -- "-$g" 2>/dev/null || true; fi
  kill -TERM "$p" 2>/dev/null || true
done
"""


def script_for(command: Command, mark: str | None = None) -> str:
    """The bash program for ``command``: exports, then the body, then ``exit``. ``mark``: the value
    of MARK_VAR its processes carry, so that they can be stopped (kubeforge.transport.cancel)."""
    if (command.argv is None) == (command.script is None):
        raise ValueError("a Command has exactly one of argv or script")
    lines: list[str] = [f"export {MARK_VAR}={mark}"] if mark else []
    for name, value in command.env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(env_value(value))}")
    if command.script is not None:
        body = "set -euo pipefail\n" + command.script.rstrip("\n")
    else:
        if not command.argv:
            raise ValueError("empty argv")
        body = "exec " + " ".join(shlex.quote(str(a)) for a in command.argv)
    lines.append("__kf_main() {\n" + body + "\n}")
    # One line: bash must have read 'exit' before the command starts consuming stdin.
    lines.append("__kf_main; exit $?")
    return "\n".join(lines) + "\n"


def payload(command: Command, mark: str | None = None) -> bytes:
    """Everything written to the shell's stdin: the program, then the command's stdin."""
    return script_for(command, mark).encode() + stdin_bytes(command)


def shell_line(*, sudo: bool, timeout: float | None) -> str:
    """The only command line the host sees. ``sudo`` is already resolved (False when root)."""
    parts: list[str] = []
    if sudo:
        parts += ["sudo", "-n", "--"]
    if timeout is not None:
        # -k: a command that ignores SIGTERM is killed 5 s later.
        parts += ["timeout", "-k", "5", f"{max(timeout, 0.1):g}"]
    parts += ["bash", "-s"]
    return " ".join(parts)

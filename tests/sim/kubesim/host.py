"""Everything the simulator touches on its machine, relative to KUBESIM_ROOT (for tests; '/' in the lab)."""

from __future__ import annotations

import contextlib
import contextvars
import glob
import os
import re
import tempfile

from . import yamlish


class SimError(Exception):
    """A refusal the real tool would print; ``code`` is an HTTP-like status for API refusals."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# tests run several simulated machines in one process: each thread may carry its own root
_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("kubesim_root", default=None)


def root() -> str:
    return _ROOT.get() or os.environ.get("KUBESIM_ROOT", "/")


def in_test_root() -> bool:
    return root() != "/"


@contextlib.contextmanager
def use_root(p: str):
    token = _ROOT.set(p)
    try:
        yield
    finally:
        _ROOT.reset(token)


def path(p: str) -> str:
    return os.path.join(root(), p.lstrip("/"))


def exists(p: str) -> bool:
    return os.path.exists(path(p))


def read(p: str) -> str:
    with open(path(p), encoding="utf-8") as f:
        return f.read()


def write(p: str, content: str | bytes, mode: int = 0o644) -> None:
    """Atomic write (temp file + rename) with the mode set before the content is visible."""
    full = path(p)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(full), prefix=".kubesim-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, full)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def wipe_dir_contents(p: str) -> None:
    import shutil

    full = path(p)
    if not os.path.isdir(full):
        return
    for name in os.listdir(full):
        target = os.path.join(full, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            os.unlink(target)


def remove(p: str) -> None:
    if os.path.lexists(path(p)):
        os.unlink(path(p))


_VER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str) -> tuple[int, int, int]:
    m = _VER.match(str(text).strip())
    if not m:
        raise SimError(f"couldn't parse version {text!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def vstr(v: tuple[int, int, int]) -> str:
    return "v{:d}.{:d}.{:d}".format(*v)


def installed_version(component: str) -> str | None:
    """The version of an installed simulator package, from its library directory."""
    found = sorted(glob.glob(path(f"/usr/lib/kubesim/*/{component}")))
    if not found:
        return None
    return "v" + os.path.basename(os.path.dirname(found[-1]))


def load_yaml_file(p: str):
    return yamlish.load(read(p))


def kubeconfig_server(p: str) -> str:
    cfg = load_yaml_file(p) or {}
    try:
        return cfg["clusters"][0]["cluster"]["server"]
    except (KeyError, IndexError, TypeError):
        raise SimError(f"invalid kubeconfig {p}: no clusters[0].cluster.server") from None


def swap_on() -> bool:
    try:
        lines = read("/proc/swaps").strip().splitlines()
    except OSError:
        return False
    return len(lines) > 1


def containerd_installed() -> bool:
    status = path("/var/lib/dpkg/status")
    try:
        with open(status, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    m = re.search(r"^Package: containerd\n(?:[^\n]+\n)*?Status: install ok installed$", text, re.M)
    return m is not None


def hostname() -> str:
    try:
        return read("/etc/hostname").strip() or os.uname().nodename
    except OSError:
        return os.uname().nodename

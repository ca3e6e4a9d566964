"""The machines' root filesystem: built once with mmdebstrap, cached by a hash of its recipe.

The cache key covers everything that shapes the image (suite, packages, mirror lines, the
customization below and the lab's public key), so changing any of them builds a new image and an
unchanged recipe reuses the old one. Builds go to a temporary directory renamed into place, so an
interrupted build never leaves a half image that a later run would trust.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.lab.paths import CACHE_DIR, LabError, ssh_key_paths

SUITE = "bookworm"
PACKAGES = (
    "systemd-sysv", "dbus", "openssh-server", "iproute2", "iputils-ping", "procps", "sudo",
    "ca-certificates", "python3", "kmod", "netbase", "apt", "curl",
)
LOGIN_USER = "kube"
# Bump when the customization below changes in a way the hash of its inputs would not notice.
CUSTOMIZE_VERSION = 3

HOSTKEYS_UNIT = """\
[Unit]
Description=Generate this machine's own SSH host keys (kubeforge lab)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
RequiredBy=ssh.service
"""

# RSA keys take long to generate and nothing here needs them; naming the keys also keeps sshd
# from logging about the missing RSA key on every start.
SSHD_DROPIN = """\
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


def runner_apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[str]:
    """One-line ``deb URI SUITE COMPONENTS`` entries for the runner's own Debian sources: that is
    how this machine reaches a Debian mirror, so the image is built from the same place."""
    lines: list[str] = []
    d = apt_dir / "sources.list.d"
    for f in sorted(d.glob("*.sources")) if d.is_dir() else []:
        for stanza in f.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for raw in stanza.splitlines():
                if raw.startswith("#") or ":" not in raw:
                    continue
                key, _, value = raw.partition(":")
                fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    if suite.startswith(SUITE):
                        lines.append(f"deb {uri} {suite} {fields.get('components', 'main')}")
    legacy = apt_dir / "sources.list"
    if legacy.is_file():
        for raw in legacy.read_text().splitlines():
            parts = raw.split("#", 1)[0].split()
            if len(parts) >= 4 and parts[0] == "deb" and not parts[1].startswith("["):
                if parts[2].startswith(SUITE):
                    lines.append(" ".join(parts))
    if not lines:
        raise LabError(f"no Debian '{SUITE}' source in {apt_dir}/sources.list(.d): the lab builds its image from the runner's mirror")
    return sorted(set(lines), key=lines.index)


def ensure_ssh_key() -> tuple[Path, str]:
    """The lab's test key (ed25519, generated once); returns the private key path and public key."""
    priv, pub = ssh_key_paths()
    if not priv.exists() or not pub.exists():
        priv.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = priv.with_name(f".tmp-{os.getpid()}")
        for p in (tmp, tmp.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeforge-lab", "-f", str(tmp)], check=True)
        os.replace(tmp.with_suffix(".pub"), pub)
        os.replace(tmp, priv)
    os.chmod(priv, 0o600)
    return priv, pub.read_text().strip()


def recipe() -> dict:
    _, pubkey = ensure_ssh_key()
    return {
        "suite": SUITE,
        "variant": "minbase",
        "packages": list(PACKAGES),
        "sources": runner_apt_sources(),
        "customize": CUSTOMIZE_VERSION,
        "hostkeys_unit": HOSTKEYS_UNIT,
        "sshd": SSHD_DROPIN,
        "user": LOGIN_USER,
        "pubkey": pubkey,
    }


def rootfs_path() -> Path:
    digest = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]
    return CACHE_DIR / f"rootfs-{digest}"


def ensure_rootfs(log=print) -> Path:
    """The cached image for the current recipe, building it first when missing."""
    final = rootfs_path()
    if (final / "etc" / "os-release").exists():
        return final
    # one build at a time on this runner; whoever waited finds the image already there
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "rootfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "etc" / "os-release").exists():
            return final
        return _build(final, log)


def _build(final: Path, log) -> Path:
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    log(f"building lab root filesystem {final} (mmdebstrap {SUITE}, once per recipe)")
    try:
        _mmdebstrap(tmp)
        _customize(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"built {final} in {time.monotonic() - started:.1f}s")
    return final


def _mmdebstrap(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(target), "-"]
    sources = "\n".join(recipe()["sources"]) + "\n"
    res = subprocess.run(cmd, input=sources, text=True, capture_output=True)
    if res.returncode != 0:
        raise LabError(f"mmdebstrap failed (exit {res.returncode}):\n{res.stderr[-3000:]}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _customize(root: Path) -> None:
    _, pubkey = ensure_ssh_key()

    def chroot(*argv: str) -> None:
        subprocess.run(["chroot", str(root), *argv], check=True, capture_output=True)

    def systemctl(*argv: str) -> None:
        subprocess.run(["systemctl", f"--root={root}", *argv], check=True, capture_output=True)

    # An empty machine-id makes systemd give each boot its own (nspawn --uuid sets it per machine).
    _write(root / "etc/machine-id", "", 0o444)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)

    chroot("useradd", "--create-home", "--shell", "/bin/bash", LOGIN_USER)
    _write(root / f"etc/sudoers.d/{LOGIN_USER}", f"{LOGIN_USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    _write(root / f"home/{LOGIN_USER}/.ssh/authorized_keys", pubkey + "\n", 0o600)
    os.chmod(root / f"home/{LOGIN_USER}/.ssh", 0o700)
    chroot("chown", "-R", f"{LOGIN_USER}:{LOGIN_USER}", f"/home/{LOGIN_USER}/.ssh")

    # Every machine makes its own host keys at first boot, so host-key checking is real.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root / "etc/systemd/system/kubeforge-lab-hostkeys.service", HOSTKEYS_UNIT)
    _write(root / "etc/ssh/sshd_config.d/kubeforge-lab.conf", SSHD_DROPIN)
    systemctl("enable", "kubeforge-lab-hostkeys.service", "systemd-networkd.service", "ssh.service")
    # wait-online would hold boot for two minutes on a bridge without DHCP; firstboot would prompt.
    systemctl("mask", "systemd-networkd-wait-online.service", "systemd-firstboot.service")

    # No route out: apt sees only the sources kubeforge configures (the lab mirror).
    _write(root / "etc/apt/sources.list", "")
    for f in (root / "etc/apt/sources.list.d").glob("*"):
        f.unlink()
    for f in (root / "var/lib/apt/lists").glob("*"):
        if f.is_file():
            f.unlink()

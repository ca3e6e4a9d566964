"""apt on a host, written once: the shell fragments every package install of kubeforge's is made of.

- ``no_service_starts``: a policy-rc.d that forbids Debian's maintainer scripts to start or restart
  services while apt runs (etcd's postinst would start a single-member etcd of its own, containerd's
  would start without kubeforge's config, kubelet's would restart the running kubelet); kubeforge
  starts each service itself, later, with its configuration. It carries a marker, so one left behind
  by a machine that lost power during apt is known as kubeforge's and removed by the next run; an
  operator's own policy-rc.d is saved and put back.
- ``apt_update``: apt-get update exits 0 when a source cannot be read; that is reported as such
  (exit 2) instead of a "package not found" later.
- ``FINISH_DPKG``: a dpkg run cut short (power loss) refuses every apt-get install until it is
  finished; finished here, with service starts still forbidden.
- ``install_pinned``: the above, then unhold, install the exact versions, hold again.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from kubeforge.render.packages import BUNDLE_APT_OPTIONS

POLICY_RC = "/usr/sbin/policy-rc.d"
POLICY_RC_MARKER = "kubeforge: no service starts"
DEBIAN_FRONTEND = "export DEBIAN_FRONTEND=noninteractive"
# kubeforge's own policy-rc.d, left by a run whose machine lost power during apt: removed, never kept
REMOVE_STALE_POLICY_RC = f"if grep -qs '{POLICY_RC_MARKER}' {POLICY_RC}; then rm -f {POLICY_RC}; fi"

# true when a dpkg run was cut short: its journal holds updates, or dpkg reports half-done packages
DPKG_INTERRUPTED = '[ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || [ -n "$(dpkg --audit 2>/dev/null)" ]'
FINISH_DPKG = "\n".join([
    f"if {DPKG_INTERRUPTED}; then",
    "  dpkg --configure -a >/dev/null",
    "fi",
])


def write_policy_rc(during: str) -> str:
    """kubeforge's policy-rc.d (every service start refused), marked as kubeforge's."""
    return f"printf '#!/bin/sh\\n# {POLICY_RC_MARKER} while {during}\\nexit 101\\n' > {POLICY_RC}\nchmod 0755 {POLICY_RC}"


def no_service_starts(during: str) -> str:
    """Forbid service starts until the script exits (``during`` says why, inside the file)."""
    return "\n".join([
        'saved=""',
        REMOVE_STALE_POLICY_RC,
        f'if [ -e {POLICY_RC} ]; then saved=$(mktemp); cp -a {POLICY_RC} "$saved"; fi',
        f'put_back() {{ if [ -n "$saved" ]; then mv -f "$saved" {POLICY_RC}; else rm -f {POLICY_RC}; fi; }}',
        "trap put_back EXIT",
        write_policy_rc(during),
    ])


def apt_update(*, offline: bool = False) -> str:
    """Read the package sources (only the pushed bundle's list when ``offline``); a source that
    cannot be read fails the script with apt's own lines and exit 2."""
    opts = BUNDLE_APT_OPTIONS if offline else "-o Acquire::Retries=3"
    what = "the offline bundle" if offline else "the package source"
    return "\n".join([
        f'out=$(apt-get update -q {opts} 2>&1) || {{ echo "$out" >&2; exit 2; }}',
        "if printf '%s\\n' \"$out\" | grep -q -e '^W: Failed to fetch' -e '^E: '; then",
        f'  printf \'%s\\n\' "$out" >&2; echo "apt-get update could not read {what}" >&2; exit 2',
        "fi",
    ])


def install_line(specs: str, *, offline: bool = False, held: bool = False) -> str:
    """``apt-get install`` of ``specs`` (already quoted), keeping changed config files as they are."""
    return (f"apt-get install -y -q {BUNDLE_APT_OPTIONS + ' ' if offline else ''}-o Dpkg::Options::=--force-confold "
            f"{'--allow-change-held-packages ' if held else ''}--no-install-recommends {specs}")


def not_enabled_when_fresh(package: str, unit: str) -> tuple[str, str]:
    """The lines before and after an apt install that leave ``unit`` disabled at boot when this
    install is ``package``'s first: Debian's postinst enables its service, which after a power loss
    would start before kubeforge put its configuration there (etcd: a single-member cluster of its
    own). kubeforge enables it itself once it may start. An earlier install's state is left alone."""
    var = "fresh_" + "".join(c if c.isalnum() else "_" for c in package)
    before = (f"case \"$(dpkg-query -W -f='${{db:Status-Abbrev}}' {shlex.quote(package)} 2>/dev/null || true)\" in "
              f"ii*) {var}=0 ;; *) {var}=1 ;; esac")
    after = f'if [ "${var}" = 1 ]; then systemctl disable {shlex.quote(unit)} >/dev/null 2>&1 || true; fi'
    return before, after


def install_pinned(wanted: dict[str, str | None], hold: Sequence[str], *, offline: bool = False,
                   update: bool = True, during: str = "packages are installed",
                   not_at_boot: Mapping[str, str] | None = None) -> str:
    """Install each package at its exact upstream version (any Debian revision of it; None: what
    the source has), the ``hold`` ones unheld first and held again after, service starts forbidden
    throughout, an interrupted dpkg finished first. ``not_at_boot``: package -> unit left disabled
    at boot when this is the package's first install (``not_enabled_when_fresh``)."""
    specs = " ".join(shlex.quote(f"{p}={v}-*") if v else shlex.quote(p) for p, v in wanted.items())
    names = " ".join(shlex.quote(h) for h in hold)
    fresh = [not_enabled_when_fresh(p, u) for p, u in (not_at_boot or {}).items()]
    lines = [DEBIAN_FRONTEND, *(b for b, _ in fresh), no_service_starts(during)]
    if update:
        lines.append(apt_update(offline=offline))
    lines.append(FINISH_DPKG)
    if hold:
        lines.append(f"apt-mark unhold {names} >/dev/null")
    lines.append(install_line(specs, offline=offline, held=bool(hold)))
    if hold:
        lines.append(f"apt-mark hold {names} >/dev/null")
    lines += [a for _, a in fresh]
    return "\n".join(lines) + "\n"

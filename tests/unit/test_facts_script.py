"""The one-script-per-host facts run: sections, splitting, and gathering over real transports."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from kubeforge.facts import FactsError, HostFacts, build_script, gather_facts, parse_host_facts, split_sections
from kubeforge.facts.script import MARKER, sections
from kubeforge.model import Role, SshSettings
from kubeforge.transport.local import LocalTransport
from kubeforge.transport.ssh import SshTransport
from tests.factories import make_host

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"


def test_split_sections_drops_banner_text_before_the_first_marker():
    out = f"Welcome to host!\n{MARKER}os\nID=debian\n{MARKER}kernel\n6.1.0\n"
    assert split_sections(out) == {"os": "ID=debian", "kernel": "6.1.0"}


def test_every_section_of_the_script_has_a_marker_and_a_unique_name():
    names = [s.name for s in sections()]
    assert len(names) == len(set(names))
    script = build_script()
    for name in names:
        assert f"echo '{MARKER}{name}'" in script


def test_the_etcd_data_dir_is_shell_quoted_into_the_script():
    script = build_script("/srv/etcd data")
    assert "'/srv/etcd data'" in script


def test_the_recorded_runner_output_parses_into_complete_facts():
    facts = parse_host_facts("runner", (FIXTURES / "script" / "debian12-runner.txt").read_text(), local_before=1.0, local_after=2.0)
    assert facts.os.family == "debian" and facts.cpus == 2 and facts.swap.enabled is False
    assert facts.hostname == "vm" and facts.arch == "x86_64"
    assert facts.packages.version_of("etcd") == "3.4.23"
    assert set(facts.problems) == {"product_uuid", "units"}  # no DMI and no systemd on the runner


def test_an_empty_output_yields_facts_full_of_unknowns_and_problems_not_an_exception():
    facts = parse_host_facts("empty", "")
    assert facts.os.id is None and facts.cpus is None and facts.swap.enabled is None
    assert {"os", "cpus", "swap", "memory", "ports", "time"} <= set(facts.problems)


def test_host_facts_round_trip_through_json():
    facts = parse_host_facts("runner", (FIXTURES / "script" / "debian12-runner.txt").read_text())
    data = json.loads(json.dumps(facts.to_dict()))
    assert data["os"]["id"] == "debian" and data["swap"]["known"] is True
    assert data["modules"]["wanted"]["overlay"] == "loaded"


def test_the_script_runs_cleanly_under_bash_errexit_on_this_machine():
    proc = subprocess.run(["bash", "-euo", "pipefail"], input=build_script(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert set(split_sections(proc.stdout)) == {s.name for s in sections()}


class _Transports:
    """Hands out a real transport per host: this machine for 'local-*', SSH for the rest."""

    def get(self, host):
        if host.name.startswith("local"):
            return LocalTransport(host.name)
        return SshTransport(host)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_gather_facts_reports_an_unreachable_host_and_still_gathers_the_others():
    ssh = SshSettings(user="kube", port=_closed_port(), connect_timeout=1.0, connect_retries=0)
    hosts = [
        make_host("local-1", "127.0.0.1", Role.CONTROL_PLANE),
        make_host("down-1", "127.0.0.1", Role.WORKER, ssh=ssh),
    ]
    result = gather_facts(_Transports(), hosts, limit=2)
    assert list(result) == ["local-1", "down-1"]
    assert isinstance(result["local-1"], HostFacts)
    assert result["local-1"].time.offset_interval is not None
    down = result["down-1"]
    assert isinstance(down, FactsError) and not down.reached
    assert down.message.startswith("not reached")


def test_the_recorded_lab_machine_output_parses_without_any_problem():
    # recorded from a booted systemd-nspawn lab machine: real systemd, no /sys/module, own product_uuid
    facts = parse_host_facts("lab-1", (FIXTURES / "script" / "debian12-nspawn-lab.txt").read_text())
    assert facts.problems == {}
    assert facts.modules.state("overlay").value == "loaded"  # from /proc/filesystems
    assert facts.units.states["etcd"].exists is False
    assert [(x.port, x.process) for x in facts.ports.listeners] == [(22, "sshd"), (22, "sshd")]
    assert facts.product_uuid == "028fd151-400c-4961-af23-1b9c3e628b4b"


def test_a_connection_cut_under_the_facts_script_is_retried_once_on_a_new_connection():
    """The facts script only reads: a connection lost while it ran is tried once more over a new one
    (seen under load on a fresh login), and a second loss is reported as the host's error."""
    from kubeforge.transport.policy import ConnectionLost

    class CutOnce(LocalTransport):
        def run(self, command):
            raise ConnectionLost("local-1", "connection lost: Socket is closed")

    class Pool:
        def __init__(self, cuts: int) -> None:
            self.cuts, self.reconnects = cuts, 0

        def get(self, host):
            return CutOnce(host.name) if self.cuts > 0 else LocalTransport(host.name)

        def reconnect(self, name):
            self.reconnects += 1
            self.cuts -= 1
            return CutOnce(name) if self.cuts > 0 else LocalTransport(name)

    host = make_host("local-1", "127.0.0.1", Role.CONTROL_PLANE)
    once = Pool(cuts=1)
    assert isinstance(gather_facts(once, [host])["local-1"], HostFacts) and once.reconnects == 1
    twice = Pool(cuts=2)
    lost = gather_facts(twice, [host])["local-1"]
    assert isinstance(lost, FactsError) and lost.lost and "connection lost" in lost.message
    assert twice.reconnects == 1

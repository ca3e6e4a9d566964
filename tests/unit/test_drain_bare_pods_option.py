"""--force-bare-pods: the named option that lets drains delete pods no controller manages (kubectl's
--force); without it the drain passes no --force. The drain script itself runs against the simulator in
tests/unit/test_sim_cli.py (refusal naming the pods and the option, then the drain with the option)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kubeforge.cli.app import build_command
from kubeforge.cli.options import allow_bare_pods
from kubeforge.plan.upgrade.commands import drain
from tests.factories import make_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    return make_cluster(tmp_path_factory.mktemp("bare"), n_cp=1, n_workers=1)


def test_drains_pass_force_only_with_the_option(cluster):
    def flags(c) -> list[str]:  # the kubectl drain line's words
        return drain("cp-1", "worker-1", c.upgrade, key="d").command.script.splitlines()[0].split()

    assert "--force" not in flags(cluster) and "--force" in flags(allow_bare_pods(cluster, True))
    assert allow_bare_pods(cluster, False) is cluster


@pytest.mark.parametrize("command", ["up", "upgrade"])
def test_the_workflows_that_drain_offer_force_bare_pods(command):
    result = CliRunner().invoke(build_command(), [command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--force-bare-pods" in result.output

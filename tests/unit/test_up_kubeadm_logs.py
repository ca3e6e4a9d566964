"""kubeadm's stdout stays on the host for diagnosis, with the token and certificate key masked
before they reach the log file. Run with the real bash and sed, on kubeadm's own output format."""

from __future__ import annotations

import subprocess

from kubeforge.plan.up.init_first_control_plane import HOST_LOG_DIR, quiet

TOKEN = "k3xq9a.0123456789abcdef"
CERT_KEY = "9f" * 32
CA_HASH = "sha256:" + "4e" * 32
# what `kubeadm init --upload-certs` prints at its end (kubeadm v1.3x), secrets in place
KUBEADM_INIT_TAIL = f"""[upload-certs] Using certificate key:
{CERT_KEY}
[bootstrap-token] Using token: {TOKEN}
You can now join any number of control-plane nodes running the following command on each as root:

  kubeadm join 10.0.0.10:6443 --token {TOKEN} \\
\t--discovery-token-ca-cert-hash {CA_HASH} \\
\t--control-plane --certificate-key {CERT_KEY}
"""


def run_quietly(tmp_path, exit_code: int) -> tuple[int, str]:
    (tmp_path / "out.txt").write_text(KUBEADM_INIT_TAIL)
    fake = f"( cat {tmp_path / 'out.txt'}; exit {exit_code} )"
    script = quiet(fake, "kubeadm-init").replace(HOST_LOG_DIR, str(tmp_path / "log"))
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    return res.returncode, (tmp_path / "log" / "kubeadm-init.log").read_text()


def test_the_kubeadm_log_keeps_the_output_but_never_the_token_or_certificate_key(tmp_path):
    code, log = run_quietly(tmp_path, 0)
    assert code == 0
    assert TOKEN not in log and CERT_KEY not in log
    assert "--token <token>" in log and "--certificate-key <certificate-key>" in log
    assert CA_HASH in log  # not a secret, and what an operator compares when a join is refused
    assert (tmp_path / "log" / "kubeadm-init.log").stat().st_mode & 0o777 == 0o600


def test_a_failing_kubeadm_still_fails_the_step_through_the_mask(tmp_path):
    code, log = run_quietly(tmp_path, 3)
    assert code == 3 and TOKEN not in log

"""Host certificates made by ssh-keygen, checked by kubeforge.transport.hostcert."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kubeforge.transport.hostcert import CertificateError, check_host_certificate, parse_certificate

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")


def _keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


def _blob(pub: Path) -> bytes:
    return base64.b64decode(pub.read_text().split()[1])


def _sign(tmp_path: Path, ca: Path, *, host: bool = True, names: str = "cp-1.lab", validity: str = "-5m:+1h") -> bytes:
    key = _keygen(tmp_path / f"k{len(list(tmp_path.iterdir()))}")
    args = ["ssh-keygen", "-q", "-s", str(ca), "-I", "cp-1", "-n", names, "-V", validity]
    subprocess.run(args + (["-h"] if host else []) + [f"{key}.pub"], check=True)
    return _blob(Path(f"{key}-cert.pub"))


@pytest.fixture
def ca(tmp_path) -> Path:
    return _keygen(tmp_path / "ca")


def test_a_host_certificate_signed_by_the_listed_ca_for_this_name_is_valid(tmp_path, ca):
    cert = parse_certificate(_sign(tmp_path, ca, names="cp-1.lab,10.0.0.1"))
    check_host_certificate(cert, "10.0.0.1", [_blob(Path(f"{ca}.pub"))])
    assert cert.principals == ("cp-1.lab", "10.0.0.1") and cert.key_type == "ssh-ed25519"


def test_an_rsa_ca_signature_verifies(tmp_path):
    rsa_ca = _keygen(tmp_path / "rsa_ca", "rsa")
    cert = parse_certificate(_sign(tmp_path, rsa_ca))
    check_host_certificate(cert, "cp-1.lab", [_blob(Path(f"{rsa_ca}.pub"))])


@pytest.mark.parametrize("case, why", [
    ("user", "user certificate"),
    ("other-name", "does not name cp-1.lab"),
    ("expired", "not valid now"),
    ("other-ca", "does not list as @cert-authority"),
    ("tampered", "signature does not verify"),
])
def test_a_certificate_that_does_not_hold_is_refused_saying_why(tmp_path, ca, case, why):
    blob = _sign(tmp_path, ca, host=case != "user", names="cp-2.lab" if case == "other-name" else "cp-1.lab",
                 validity="20200101:20200102" if case == "expired" else "-5m:+1h")
    authorities = [_blob(Path(f"{ca}.pub"))]
    if case == "other-ca":
        authorities = [_blob(Path(f"{_keygen(tmp_path / 'ca2')}.pub"))]
    if case == "tampered":
        i = blob.index(b"cp-1.lab")
        blob = blob[:i] + b"cp-9" + blob[i + 4:]
        cert = parse_certificate(blob)
        with pytest.raises(CertificateError, match=why):
            check_host_certificate(cert, "cp-9.lab", authorities)
        return
    with pytest.raises(CertificateError, match=why):
        check_host_certificate(parse_certificate(blob), "cp-1.lab", authorities, now=time.time())


def test_a_truncated_certificate_is_a_clean_error(tmp_path, ca):
    blob = _sign(tmp_path, ca)
    for cut in (0, 10, 60, len(blob) - 10):
        with pytest.raises(CertificateError):
            parse_certificate(blob[:cut])

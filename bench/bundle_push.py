"""Pushing an offline bundle's file over real SSH: kubeforge's streamed put_file vs put(bytes) vs scp.

    python bench/bundle_push.py [--mb 100] [--rounds 3]

Starts a private OpenSSH server on 127.0.0.1 (needs root, like tests/integration/sshd_helper.py),
writes one random --mb MB file, and in the same run times, each into a fresh remote path:
  put_file:  SshTransport.put_file (16 MiB pieces through bash, sha256 checked on the host, rename)
  put bytes: the file read into memory and SshTransport.put (what a RenderedFile would do)
  reference: OpenSSH `scp` of the same file
and the Python heap peak (tracemalloc) of both kubeforge ways: the streamed push should stay near
two pieces whatever the file's size, put(bytes) at least the file's size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn) -> tuple[float, float]:
    tracemalloc.start()
    t0 = time.monotonic()
    fn()
    dt = time.monotonic() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return dt, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from kubeforge.transport.ssh import SshTransport
    from tests.integration.sshd_helper import Sshd, keygen

    with tempfile.TemporaryDirectory(prefix="kf-bench-push-") as tmp:
        work = Path(tmp)
        key = keygen(work / "id_ed25519")
        sshd = Sshd(work / "sshd", key).start()
        try:
            kh = work / "known_hosts"
            kh.write_text(sshd.known_hosts_line())
            src = work / "bundle.deb"
            with src.open("wb") as f:
                for _ in range(args.mb):
                    f.write(os.urandom(1 << 20))
            out = work / "remote"
            out.mkdir()
            t = SshTransport(sshd.host("bench", kh))
            rows: dict[str, list[tuple[float, float]]] = {"put_file": [], "put bytes": [], "scp": []}
            for r in range(args.rounds):
                rows["put_file"].append(timed(lambda r=r: t.put_file(str(out / f"a{r}.deb"), src)))
                rows["put bytes"].append(timed(lambda r=r: t.put(str(out / f"b{r}.deb"), src.read_bytes())))
                scp = ["scp", "-q", "-i", str(key), "-o", f"UserKnownHostsFile={kh}", "-P", str(sshd.port),
                       str(src), f"root@127.0.0.1:{out}/c{r}.deb"]
                rows["scp"].append(timed(lambda scp=scp: subprocess.run(scp, check=True)))
            t.close()
        finally:
            sshd.stop()
    print(f"push of one {args.mb} MB file over loopback SSH, median of {args.rounds}")
    ref = statistics.median(x[0] for x in rows["scp"])
    for name, xs in rows.items():
        s = statistics.median(x[0] for x in xs)
        heap = "-" if name == "scp" else f"{max(x[1] for x in xs):.1f} MiB"
        print(f"  {name:10s} {s:6.2f} s  {args.mb / s:7.1f} MB/s  {s / ref:5.2f}x scp  python heap peak {heap}")


if __name__ == "__main__":
    main()

"""The simulated API server listens as kube-apiserver does (Go's net.Listen: the kernel's somaxconn
as backlog), and the simulated kubectl words a connection that times out as kubectl does, apart
from one that is refused (tests/sim/README.md, "API server: listen backlog")."""

from __future__ import annotations

import select
import socket

import pytest

from tests.sim.kubesim import client
from tests.sim.kubesim.apiserver import _Handler, _TlsServer, listen_backlog
from tests.sim.kubesim.host import SimError

BURST = 100  # a fleet's kubelets and joins reaching one API server in the same instant


def test_a_burst_of_connections_is_queued_by_the_kernel_while_the_server_is_busy():
    """Nothing accepts during the burst (the accept loop busy elsewhere): every connection must still
    complete its TCP handshake into the listen queue. With socketserver's default backlog of 5, about
    6 do and the other SYNs are dropped."""
    assert listen_backlog() >= BURST
    srv = _TlsServer(("127.0.0.1", 0), _Handler)
    socks = []
    try:
        for _ in range(BURST):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(srv.server_address)
            socks.append(s)
        pending = list(socks)
        for _ in range(20):  # up to 2 s for the handshakes the kernel completes at once
            _, writable, _ = select.select([], pending, [], 0.1)
            pending = [s for s in pending if s not in writable]
            if not pending:
                break
        connected = sum(1 for s in socks if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and s not in pending)
        assert connected == BURST
    finally:
        for s in socks:
            s.close()
        srv.server_close()


def test_kubectl_says_i_o_timeout_for_a_server_that_never_answers_and_refused_for_a_closed_port():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the handshake completes in the kernel; nobody ever speaks TLS
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        host, port = silent.getsockname()
        with pytest.raises(SimError) as timed_out:
            client.request([client.base_url(f"https://{host}:{port}")], "GET", "/healthz", timeout=0.5)
        assert str(timed_out.value.message) == f"Unable to connect to the server: dial tcp {host}:{port}: i/o timeout"
        with pytest.raises(SimError) as refused:
            client.request([client.base_url(f"https://127.0.0.1:{closed_port}")], "GET", "/healthz", timeout=0.5)
        assert refused.value.message.startswith(f"The connection to the server 127.0.0.1:{closed_port} was refused")
    finally:
        silent.close()

"""HashingWriter: bytes written and hashed off the receiving thread, errors surfaced to the caller."""

from __future__ import annotations

import hashlib
import os

import pytest

from kubeforge.transport.stream import HashingWriter


def test_every_chunk_is_written_in_order_and_hashed(tmp_path):
    chunks = [os.urandom(n) for n in (1, 70_000, 3 << 20, 0, 5)]
    with open(tmp_path / "out", "wb") as f:
        w = HashingWriter(f)
        for c in chunks:
            w.feed(c)
        digest, size = w.finish()
    data = b"".join(chunks)
    assert (tmp_path / "out").read_bytes() == data
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_write_error_reaches_the_caller(tmp_path):
    f = open(tmp_path / "out", "wb")
    f.close()  # writing now raises ValueError in the writer thread
    w = HashingWriter(f)
    with pytest.raises(ValueError):
        for _ in range(100):
            w.feed(b"x" * 1024)
        w.finish()
    w.close()

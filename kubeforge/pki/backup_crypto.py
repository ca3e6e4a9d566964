"""Backup encryption: AES-256-GCM, streamed, with a key file or a passphrase (scrypt).

File layout: b"KFENC1\n", a 4-byte big-endian header length, a JSON header (kdf, salt, nonce —
nothing secret), the ciphertext, the 16-byte GCM tag. The key itself is never written anywhere
near the backup.

Both directions stream: ``Encryptor`` turns plaintext chunks into the file as they arrive (a
snapshot downloading, a tarball being packed), so no plaintext byte is ever written to disk, even
when the run is killed halfway; ``decrypt_chunks`` hands plaintext to a callable and only then
checks the tag, so its caller must not trust (or keep) anything before it returns.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kubeforge.errors import InputError
from kubeforge.model.secret import Secret

MAGIC = b"KFENC1\n"
_CHUNK = 1024 * 1024
_TAG = 16
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class DecryptionFailed(InputError):
    pass


def load_key_file(path: Path) -> bytes:
    """A key file holds 32 raw bytes, or 64 hex characters, or base64 of 32 bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the backup key file: {exc.strerror}") from None
    if len(data) == 32:
        return data
    text = data.strip()
    for decode in (binascii.unhexlify, base64.b64decode):
        try:
            key = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise InputError(f"{path}: a backup key file must hold 32 bytes (raw, hex or base64); generate one with: head -c32 /dev/urandom > {path.name}")


def _derive(passphrase: Secret, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase.reveal().encode())


class Sink(Protocol):
    """Where an Encryptor writes: a file, or anything with write and flush."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> None: ...


class Encryptor:
    """A write-only file object: plaintext in, the KFENC1 format out to ``out``.

    The header goes out at construction; ``close()`` writes the tag (it does not close ``out``).
    A file whose writer never reached ``close()`` has no tag and can never be decrypted.
    """

    def __init__(self, out: Sink, *, key: bytes | None = None, passphrase: Secret | None = None) -> None:
        header: dict = {"cipher": "AES-256-GCM"}
        if passphrase is not None:
            salt = os.urandom(16)
            key = _derive(passphrase, salt)
            header["kdf"] = {"name": "scrypt", "salt": salt.hex(), **_SCRYPT}
        elif key is None or len(key) != 32:
            raise InputError("encryption needs a 32-byte key or a passphrase")
        else:
            header["kdf"] = {"name": "none"}
        nonce = os.urandom(12)
        header["nonce"] = nonce.hex()
        raw_header = json.dumps(header, sort_keys=True).encode()
        self._enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._enc.authenticate_additional_data(raw_header)
        self._out = out
        self.closed = False
        out.write(MAGIC + struct.pack(">I", len(raw_header)) + raw_header)

    def write(self, chunk: bytes) -> int:
        self._out.write(self._enc.update(chunk))
        return len(chunk)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.write(self._enc.finalize() + self._enc.tag)


def open_private(path: Path) -> BinaryIO:
    """A new file only its owner can read, created 0600 (never briefly wider)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def encrypt_file(src: Path, dst: Path, *, key: bytes | None = None, passphrase: Secret | None = None) -> None:
    tmp = dst.with_name(dst.name + ".part")
    with open_private(tmp) as out, open(src, "rb") as inp:
        enc = Encryptor(out, key=key, passphrase=passphrase)
        while chunk := inp.read(_CHUNK):
            enc.write(chunk)
        enc.close()
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dst)


def is_encrypted(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def decrypt_chunks(src: Path, sink: Callable[[bytes], object], *, key: bytes | None = None,
                   passphrase: Secret | None = None) -> None:
    """Feed the plaintext of ``src`` to ``sink`` chunk by chunk, then check the tag.

    Raises DecryptionFailed (after the last chunk) when the key is wrong or the file was altered.
    """
    size = src.stat().st_size
    with open(src, "rb") as inp:
        if inp.read(len(MAGIC)) != MAGIC:
            raise DecryptionFailed(f"{src}: not a kubeforge-encrypted backup")
        (hlen,) = struct.unpack(">I", inp.read(4))
        raw_header = inp.read(hlen)
        header = json.loads(raw_header)
        kdf = header.get("kdf", {})
        if kdf.get("name") == "scrypt":
            if passphrase is None:
                raise DecryptionFailed(f"{src}: encrypted with a passphrase; give --passphrase-file or KUBEFORGE_BACKUP_PASSPHRASE")
            key = Scrypt(salt=bytes.fromhex(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
                passphrase.reveal().encode()
            )
        elif key is None:
            raise DecryptionFailed(f"{src}: encrypted with a key file; give --key-file")
        body_start = len(MAGIC) + 4 + hlen
        body_len = size - body_start - _TAG
        if body_len < 0:
            raise DecryptionFailed(f"{src}: truncated (no authentication tag)")
        inp.seek(size - _TAG)
        tag = inp.read(_TAG)
        inp.seek(body_start)
        dec = Cipher(algorithms.AES(key), modes.GCM(bytes.fromhex(header["nonce"]), tag)).decryptor()
        dec.authenticate_additional_data(raw_header)
        remaining = body_len
        while remaining > 0:
            chunk = inp.read(min(_CHUNK, remaining))
            if not chunk:
                raise DecryptionFailed(f"{src}: truncated while reading")
            remaining -= len(chunk)
            sink(dec.update(chunk))
        try:
            dec.finalize()
        except InvalidTag:
            raise DecryptionFailed(f"{src}: wrong key or passphrase, or the file was altered") from None


def decrypt_bytes(src: Path, *, key: bytes | None = None, passphrase: Secret | None = None) -> bytes:
    """The authenticated plaintext of ``src``, in memory only."""
    parts: list[bytes] = []
    decrypt_chunks(src, parts.append, key=key, passphrase=passphrase)
    return b"".join(parts)

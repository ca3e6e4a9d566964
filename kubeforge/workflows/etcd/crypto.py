"""Backup encryption: AES-256-GCM, streamed, with a key file or a passphrase (scrypt).

File layout: b"KFENC1\n", a 4-byte big-endian header length, a JSON header (kdf, salt, nonce —
nothing secret), the ciphertext, the 16-byte GCM tag. The key itself is never written anywhere
near the backup.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from pathlib import Path

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


def encrypt_file(src: Path, dst: Path, *, key: bytes | None = None, passphrase: Secret | None = None) -> None:
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
    enc = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(raw_header)
    tmp = dst.with_name(dst.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
        out.write(MAGIC + struct.pack(">I", len(raw_header)) + raw_header)
        while chunk := inp.read(_CHUNK):
            out.write(enc.update(chunk))
        out.write(enc.finalize())
        out.write(enc.tag)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dst)


def is_encrypted(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def decrypt_file(src: Path, dst: Path, *, key: bytes | None = None, passphrase: Secret | None = None) -> None:
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
        inp.seek(size - _TAG)
        tag = inp.read(_TAG)
        inp.seek(body_start)
        dec = Cipher(algorithms.AES(key), modes.GCM(bytes.fromhex(header["nonce"]), tag)).decryptor()
        dec.authenticate_additional_data(raw_header)
        tmp = dst.with_name(dst.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                remaining = body_len
                while remaining > 0:
                    chunk = inp.read(min(_CHUNK, remaining))
                    remaining -= len(chunk)
                    out.write(dec.update(chunk))
                dec.finalize()
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            if type(exc).__name__ == "InvalidTag":
                raise DecryptionFailed(f"{src}: wrong key or passphrase, or the file was altered") from None
            raise
    os.replace(tmp, dst)

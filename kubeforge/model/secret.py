"""A value that must never be printed: tokens, certificate keys, private keys, passphrases."""

from __future__ import annotations

import threading

_REGISTRY_LOCK = threading.Lock()
_REGISTERED: set[str] = set()


class Secret:
    """Wraps a secret string. ``str()``/``repr()``/``format()`` show ``***``; ``reveal()`` gives it.

    Every Secret registers its value so the logging redaction filter (a second line of defence) can
    mask it wherever it leaks into a message.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value
        if len(value) >= 6:
            with _REGISTRY_LOCK:
                _REGISTERED.add(value)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # never pickle a secret by accident
        raise TypeError("Secret values cannot be pickled")


def registered_secrets() -> list[str]:
    """Values of every Secret created in this process, longest first (for redaction)."""
    with _REGISTRY_LOCK:
        return sorted(_REGISTERED, key=len, reverse=True)


def redact(text: str) -> str:
    """Replace every registered secret value in ``text`` with ``***``."""
    for value in registered_secrets():
        if value in text:
            text = text.replace(value, "***")
    return text

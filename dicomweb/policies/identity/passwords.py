"""Password hashes for local users: scrypt (hashlib) with a random salt, parameters kept in the hash string.

Format: ``scrypt$N$r$p$<salt b64>$<key b64>``, so the cost can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

_N, _R, _P = 2**14, 8, 1
_KEY_BYTES = 32
_SALT_BYTES = 16
# A hash to compare against when the user does not exist, so the answer takes as long either way.
_DUMMY = ""


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_KEY_BYTES,
                          maxmem=256 * n * r + 1024 * 1024)


def hash_password(password: str) -> str:
    salt = os.urandom(_SALT_BYTES)
    key = _derive(password, salt, _N, _R, _P)
    encode = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${encode(salt).decode()}${encode(key).decode()}"


def check_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded``; an empty or unreadable hash never matches."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key, validate=True)
        actual = _derive(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def waste_time(password: str) -> None:
    """Spend what a real check spends, for a user that does not exist (no timing oracle for user names)."""
    global _DUMMY
    if not _DUMMY:
        _DUMMY = hash_password("no such user")
    check_password(password, _DUMMY)

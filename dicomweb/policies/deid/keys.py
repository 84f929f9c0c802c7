"""The de-identification secret and what is derived from it: UID pseudonyms, research IDs, date offsets.

Everything is an HMAC-SHA256 under one secret, so every server process and every restart derives the same
values, and nobody without the secret can link a pseudonym to its original.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

KEY_FILE = "deid.key"
MAX_SHIFT_DAYS = 3650


def _create_once(path: Path) -> None:
    # Each process writes a candidate and hard-links it to the final name; a link never replaces an existing
    # file, so concurrent first starts all end up reading the same secret.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".deid-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def load_secret(configured: str, data_dir: Path) -> bytes:
    """``deid_secret`` from the settings, else the one kept under ``data_dir/auth`` (made on first use)."""
    if configured:
        return configured.encode()
    folder = data_dir / "auth"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / KEY_FILE
    if not path.exists():
        _create_once(path)
    return path.read_text().strip().encode()


def _mac(secret: bytes, message: str) -> bytes:
    return hmac.new(secret, message.encode(), hashlib.sha256).digest()


def pseudonym(secret: bytes, uid: str) -> str:
    """A 2.25 UID (PS3.5 B.2) from the HMAC truncated to 128 bits: at most 44 characters, no leading zeros."""
    return "2.25." + str(int.from_bytes(_mac(secret, uid)[:16], "big"))


def research_id(secret: bytes, patient_key: str) -> str:
    return "R" + base64.b32encode(_mac(secret, "patient\0" + patient_key)).decode()[:16]


def shift_days(secret: bytes, patient_key: str) -> int:
    """A per-patient offset in [-3650, -1]: intervals between a patient's dates survive, the dates do not."""
    value = int.from_bytes(_mac(secret, "dates\0" + patient_key)[:8], "big")
    return -(value % MAX_SHIFT_DAYS) - 1

"""The embedded issuer's signing key: an RSA key made once under ``data_dir/auth`` and kept (mode 0600).

Two processes starting at once must end with the same key: each writes its candidate to a private temporary
file and hard-links it to the final name; a link never replaces an existing file, so the first one wins
and the other reads the winner's key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .jose import JsonWebKey, KeySet

KEY_FILE = "signing-key.pem"
ALGORITHM = "RS256"


@dataclass(frozen=True)
class SigningKey:
    """The private key (authlib JWK) with its id (RFC 7638 thumbprint) and the public JWKS."""

    private: Any
    kid: str
    jwks: dict[str, Any]

    @property
    def public_keys(self) -> Any:
        return KeySet([JsonWebKey.import_key(k) for k in self.jwks["keys"]])


def auth_dir(data_dir: Path) -> Path:
    folder = data_dir / "auth"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _new_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _create_once(path: Path) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mkstemp files are mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_new_pem())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def load_signing_key(data_dir: Path) -> SigningKey:
    """The key under ``data_dir/auth``, made on first use."""
    path = auth_dir(data_dir) / KEY_FILE
    if not path.exists():
        _create_once(path)
    private = JsonWebKey.import_key(path.read_bytes(), {"kty": "RSA"})
    kid = private.thumbprint()
    public = {**private.as_dict(is_private=False), "kid": kid, "use": "sig", "alg": ALGORITHM}
    return SigningKey(private=private, kid=kid, jwks={"keys": [public]})

"""Token helpers for the identity tests: keys, signed tokens, and hand-made forgeries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dicomweb.policies.identity.jose import JsonWebKey, JsonWebToken
from dicomweb.policies.identity.jwks import StaticKeys
from dicomweb.policies.identity.validator import TokenValidator
from dicomweb.settings import DEFAULT_CLAIMS

ISSUER = "https://idp.example.org/realms/hospital"
AUDIENCE = "dicomweb"


@dataclass
class TestKey:
    __test__ = False
    private: Any  # authlib JWK
    kid: str
    alg: str

    @property
    def public_jwk(self) -> dict[str, Any]:
        return {**self.private.as_dict(is_private=False), "kid": self.kid, "use": "sig", "alg": self.alg}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        token: bytes = JsonWebToken([self.alg]).encode({"alg": self.alg, "kid": self.kid, **header}, claims,
                                                        self.private, check=False)
        return token.decode()


def rsa_key(kid: str = "rsa-1") -> TestKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return TestKey(JsonWebKey.import_key(pem, {"kty": "RSA"}), kid, "RS256")


def ec_key(kid: str = "ec-1") -> TestKey:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return TestKey(JsonWebKey.import_key(pem, {"kty": "EC"}), kid, "ES256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def hs256_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """The classic confusion attack: HMAC "signed" with the RSA public key's text as the secret."""
    head = f"{b64(json.dumps({'alg': 'HS256', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{head}.{b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "u-42", "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
            "jti": "j-1", "roles": ["doctor"], "name": "House^Gregory", "institution": "General Hospital",
            "department": "Diagnostics", "national_id": "12345678", "national_id_issuer": "NATIONAL"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def validator(*keys: TestKey, paths: dict[str, str] | None = None, leeway: int = 30,
              algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256")) -> TokenValidator:
    return TokenValidator(issuer=ISSUER, audience=AUDIENCE, algorithms=algorithms, leeway=leeway,
                          claim_paths=paths or dict(DEFAULT_CLAIMS),
                          keys=StaticKeys({"keys": [k.public_jwk for k in keys]}))


@pytest.fixture(scope="session")
def key() -> TestKey:
    return rsa_key()
